"""The api tier hashes passwords with MD5 (tests/api/conftest.py), for speed; the product must not."""

from django.conf import global_settings
from django.contrib.auth.hashers import get_hasher, identify_hasher, make_password

WEAK = ("MD5PasswordHasher", "UnsaltedMD5PasswordHasher", "UnsaltedSHA1PasswordHasher", "SHA1PasswordHasher")


def test_the_product_hashes_with_djangos_default_pbkdf2():
    import server.settings as product

    hashers = getattr(product, "PASSWORD_HASHERS", global_settings.PASSWORD_HASHERS)
    assert hashers[0] == "django.contrib.auth.hashers.PBKDF2PasswordHasher"
    assert not [h for h in hashers if h.rsplit(".", 1)[-1] in WEAK]
    # Django 5.2's PBKDF2 default; the product does not lower it.
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    assert PBKDF2PasswordHasher.iterations >= 1_000_000


def test_this_tier_hashes_with_md5():
    assert get_hasher().algorithm == "md5"
    assert identify_hasher(make_password("x")).algorithm == "md5"
