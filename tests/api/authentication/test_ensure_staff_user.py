import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def test_bootstraps_a_staff_publisher_and_is_idempotent():
    call_command("ensure_staff_user", username="boss", password="s3cret-enough", email="b@example.com")
    call_command("ensure_staff_user", username="boss", password="s3cret-enough", email="b@example.com")
    user = User.objects.get(username="boss")
    assert user.is_staff and not user.is_superuser
    assert user.has_perms(["blog.publish_post", "blog.view_post"])
    assert user.check_password("s3cret-enough")
    assert User.objects.filter(username="boss").count() == 1


def test_an_existing_users_password_is_left_alone(capsys):
    call_command("ensure_staff_user", username="boss", password="s3cret-enough")
    # Changed since (in the admin, say); the next deploy must not put the bootstrap one back.
    user = User.objects.get(username="boss")
    user.set_password("changed-by-the-owner")
    user.save()
    call_command("ensure_staff_user", username="boss", password="s3cret-enough")
    assert User.objects.get(username="boss").check_password("changed-by-the-owner")
    assert "password left unchanged" in capsys.readouterr().out


def test_the_password_is_reset_only_when_asked(settings):
    call_command("ensure_staff_user", username="boss", password="s3cret-enough")
    call_command("ensure_staff_user", username="boss", password="new-password-1", reset_password=True)
    assert User.objects.get(username="boss").check_password("new-password-1")
    # POSTWIRE_BOOTSTRAP_RESET_PASSWORD=true is the option's default.
    settings.BOOTSTRAP_RESET_PASSWORD = True
    call_command("ensure_staff_user", username="boss", password="new-password-2")
    assert User.objects.get(username="boss").check_password("new-password-2")


def test_missing_password_is_an_error_and_creates_nothing():
    with pytest.raises(CommandError, match="PASSWORD"):
        call_command("ensure_staff_user", username="boss", password="")
    assert not User.objects.filter(username="boss").exists()


def test_no_username_configured_does_nothing(capsys):
    call_command("ensure_staff_user", username="", password="")
    assert "no staff user" in capsys.readouterr().out.lower()
    assert not User.objects.exists()


def test_rerunning_with_the_same_password_keeps_sessions_valid():
    call_command("ensure_staff_user", username="boss", password="s3cret-enough")
    hash_before = User.objects.get(username="boss").password
    call_command("ensure_staff_user", username="boss", password="s3cret-enough")
    # Sessions are bound to the password hash: unchanged hash, nobody is logged out.
    assert User.objects.get(username="boss").password == hash_before
