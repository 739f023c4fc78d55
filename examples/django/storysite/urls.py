from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/sse-token/", views.SseTokenView.as_view(), name="sse-token"),
    path("projects/<str:project_id>/", views.project_page, name="project"),
    path("static/sse-kit.js", views.sse_kit, name="sse-kit"),
]
