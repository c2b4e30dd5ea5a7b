class NodeHeaderMiddleware:
    """Names the serving node in X-Postwire-Node, so a client (and the tests) can tell which
    gunicorn replica behind nginx answered."""

    def __init__(self, get_response):
        from django.conf import settings

        self.get_response = get_response
        self.node = settings.NODE_NAME

    def __call__(self, request):
        response = self.get_response(request)
        response["X-Postwire-Node"] = self.node
        return response
