from django.contrib import admin
from django.urls import path

admin.site.site_header = "Devshare console"
admin.site.site_title = "Devshare"
admin.site.index_title = "Tenants, devices and shares"

urlpatterns = [
    path("admin/", admin.site.urls),
]
