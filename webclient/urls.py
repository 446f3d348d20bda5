from django.urls import path

from webclient.views import web_client

urlpatterns = [
    path("", web_client, name="web-client"),
]
