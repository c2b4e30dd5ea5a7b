import uuid

from django.conf import settings
from django.db import models

from server.app.blog.permissions import PUBLISH_POST_CODENAME


class Post(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=200)
    content = models.TextField(blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="posts")
    published = models.BooleanField(default=False, db_index=True)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-published_at", "-created_at"]
        permissions = [(PUBLISH_POST_CODENAME, "Can publish post")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(published=False) | models.Q(published_at__isnull=False),
                name="published_post_has_published_at",
            )
        ]

    def __str__(self) -> str:
        return self.title


class PostEvent(models.Model):
    """One row per thing subscribers hear about, written in the same transaction as the change.

    `seq` is the database's monotonically increasing sequence number: the layer message carries
    it, and a subscriber or a hub that missed messages (Redis is at-most-once) asks for
    everything after the last `seq` it saw. The row holds all a notification needs, so
    delivering it costs no query per subscriber.
    """

    class Kind(models.TextChoices):
        PUBLISHED = "published"
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"

    seq = models.BigAutoField(primary_key=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Not a foreign key: the event outlives a deleted post.
    post_id = models.UUIDField(db_index=True)
    title = models.CharField(max_length=200)
    published_at = models.DateTimeField(null=True, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.kind} {self.title}"
