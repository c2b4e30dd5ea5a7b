from django.contrib import admin

from server.app.blog.models import Post, PostEvent


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "published", "published_at", "created_at"]
    list_filter = ["published"]
    search_fields = ["title", "content"]
    # Publishing goes through services.post_publish so subscribers are notified; not a checkbox.
    readonly_fields = ["published", "published_at"]


@admin.register(PostEvent)
class PostEventAdmin(admin.ModelAdmin):
    list_display = ["seq", "kind", "title", "post_id", "created_at"]
    list_filter = ["kind"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
