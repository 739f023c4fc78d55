"""The token view the viewer calls, and the page that shows ``<sse-stream-viewer>``."""
import time

import jwt
from django.conf import settings
from django.http import FileResponse, Http404
from django.shortcuts import render
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from .permissions import visible_projects


class SseTokenView(APIView):
    """GET /api/sse-token/ -> {"token", "expires_in", "projects"}: a short-lived HS256 token for the hub whose
    ``projects`` claim lists the projects this user may see. The hub checks the project of each stream and cancel
    against it: 401 without a token, 403 for a project the token does not list. Logged out: 403 here (DRF's
    SessionAuthentication), so the page has no token to give and the hub answers 401."""

    permission_classes = [IsAuthenticated]

    def get(self, request):
        projects = visible_projects(request.user)
        ttl = settings.SSE_TOKEN_TTL_SECONDS
        now = int(time.time())
        claims = {"projects": projects, "sub": str(request.user.pk), "iat": now, "exp": now + ttl}
        token = jwt.encode(claims, settings.SSE_AUTH_SECRET, algorithm="HS256")
        response = Response({"token": token, "expires_in": ttl, "projects": projects})
        response["Cache-Control"] = "no-store"
        return response


def project_page(request, project_id):
    """The page: the viewer of the project's rewrite stage, its token from SseTokenView."""
    return render(request, "project.html", {"project_id": project_id})


def sse_kit(request):
    try:
        return FileResponse(open(settings.SSE_KIT_JS, "rb"), content_type="text/javascript")
    except FileNotFoundError as error:
        raise Http404("build the kit first: npm run build:client") from error
