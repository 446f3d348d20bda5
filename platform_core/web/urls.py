from django.urls import path

from platform_core.web.views import web_client

urlpatterns = [
    path("", web_client, name="web-client"),
]
