"""Who may watch which project. In the original backend this is the DRF permission on the project views
(``IsAuthenticated`` + an object permission such as ``IsProjectMember``); here membership is a Django group
``project-<id>``, so the example needs no models of its own. Replace ``visible_projects`` with your queryset:
``Project.objects.filter(members=user).values_list("id", flat=True)``."""
from rest_framework.permissions import BasePermission


def visible_projects(user):
    if not user.is_authenticated:
        return []
    return sorted(name[len("project-"):] for name in user.groups.values_list("name", flat=True) if name.startswith("project-"))


class CanViewProject(BasePermission):
    """The object permission of the original project views, for a view that takes ``project_id``."""

    def has_permission(self, request, view):
        project_id = view.kwargs.get("project_id") or request.query_params.get("project")
        return project_id is None or project_id in visible_projects(request.user)
