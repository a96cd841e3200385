"""IoT credentials in the tenant API: a token for the caller's own app, and
one for a device. Thin views over `authz.tokens.credentials`."""
import logging

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

from config.api.errors import Conflict
from config.api.ids import MAX_ID
from config.api.throttling import ScopedWriteThrottle
from config.api.views import TenantView
from devices import selectors
from devices.errors import DomainError, ErrorCode
from devices.models import Device
from lambda_bridge import tokens, vocabulary

from .tokens import credentials

log = logging.getLogger(__name__)


class ScopeRequired(Conflict):
    default_code = ErrorCode.SCOPE_REQUIRED.value


class IotUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "IoT credentials cannot be issued right now; the operators have been told why."
    default_code = "iot_unavailable"


class ScopeSerializer(serializers.Serializer):
    devices = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False,
                                    allow_empty=False, max_length=tokens.MAX_SCOPE_THINGS,
                                    help_text="Device ids: the token reaches only these.")
    group = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False,
                                     help_text="A group id: the token reaches only the group's devices.")

    def validate(self, data):
        if len(data) != 1:
            raise serializers.ValidationError("Give either devices or group.")
        return data


class LifetimeSerializer(serializers.Serializer):
    lifetimeSeconds = serializers.IntegerField(  # noqa: N815 (the response's naming, after AWS IoT's)
        required=False, min_value=credentials.MIN_LIFETIME_SECONDS,
        help_text="Shorter than the platform's default lifetime, if wanted.")


CREDENTIAL_FIELD_HELP = ("signed (the default): a JWT and its RSA signature, for the signed authorizer; compact: "
                         "a token of at most 200 characters for the unsigned authorizer, for devices only "
                         "(docs/credentials.md#compact-device-tokens).")


class UserCredentialsRequestSerializer(LifetimeSerializer):
    scope = ScopeSerializer(required=False, help_text="Narrow the token to some of your devices.")
    credential = serializers.ChoiceField(choices=vocabulary.CREDENTIAL_KINDS, required=False,
                                         help_text=CREDENTIAL_FIELD_HELP)


class DeviceCredentialsRequestSerializer(LifetimeSerializer):
    credential = serializers.ChoiceField(choices=vocabulary.CREDENTIAL_KINDS, required=False,
                                         default=vocabulary.SIGNED_CREDENTIAL, help_text=CREDENTIAL_FIELD_HELP)


class CredentialsSerializer(serializers.Serializer):
    """Field names follow the AWS IoT Device SDKs' custom-authorizer
    parameters. A field is present only for the kind it belongs to: the
    signature and wssUrl for signed credentials, mqttPassword and
    httpsPublishUrl for compact ones."""

    credential = serializers.ChoiceField(choices=vocabulary.CREDENTIAL_KINDS,
                                         help_text="signed or compact: which authorizer the token is for.")
    token = serializers.CharField(help_text="The platform JWT (RS256), or the compact token; never log it.")
    kid = serializers.CharField(help_text="The id of the key that signed the token.")
    tokenSignature = serializers.CharField(  # noqa: N815
        required=False, help_text="Signed only: base64 RSA-SHA256 of the token, checked by AWS IoT.")
    tokenSignatureUrlEncoded = serializers.CharField(  # noqa: N815
        required=False,
        help_text="tokenSignature URL-encoded (+ / = escaped), for clients that put it into a URL or a username "
                  "as given, such as the JS SDK's newWebsocketMqttBuilderWithCustomAuth.")
    authorizerName = serializers.CharField()  # noqa: N815
    tokenKeyName = serializers.CharField(help_text="The query parameter or header that carries the token.")  # noqa: N815
    endpoint = serializers.CharField(help_text="The AWS IoT data endpoint (ATS).")
    clientId = serializers.CharField(help_text="Connect with exactly this MQTT client id.")  # noqa: N815
    expiresAt = serializers.DateTimeField()  # noqa: N815
    mqttUsername = serializers.CharField(  # noqa: N815
        help_text="MQTT username for port 443 with ALPN `mqtt`; with an AWS IoT Device SDK, give this OR the four "
                  "custom-authorizer fields, never both.")
    mqttPassword = serializers.CharField(  # noqa: N815
        required=False, help_text="Compact only: the MQTT password, which is the token (ASCII).")
    wssUrl = serializers.CharField(  # noqa: N815
        required=False,
        help_text="Signed only: MQTT-over-WebSocket URL with the credentials in its query string, for plain MQTT "
                  "clients such as MQTT.js; AWS's own SDKs put them in the CONNECT username instead.")
    httpsPublishUrl = serializers.CharField(  # noqa: N815
        required=False,
        help_text="Compact only: an example HTTPS publish (POST) to the device's telemetry topic, with the "
                  "authorizer's name and the token in the query string; they may go in headers instead.")


def _render(creds: credentials.Credentials) -> Response:
    fields = {
        "credential": creds.credential, "token": creds.token, "kid": creds.kid,
        "authorizerName": creds.authorizer_name, "tokenKeyName": creds.token_key_name, "endpoint": creds.endpoint,
        "clientId": creds.client_id, "expiresAt": creds.expires_at, "mqttUsername": creds.mqtt_username,
    }
    if creds.compact:
        fields.update(mqttPassword=creds.mqtt_password,
                      httpsPublishUrl=creds.https_publish_url(credentials.example_topic(creds.client_id)))
    else:
        fields.update(tokenSignature=creds.token_signature,
                      tokenSignatureUrlEncoded=creds.token_signature_url_encoded, wssUrl=creds.wss_url)
    body = CredentialsSerializer(fields).data
    # A bearer credential: no cache along the way may keep it.
    return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})


class CredentialsView(TenantView):
    # JSON only (415 otherwise): a form field holds text, so a form-encoded
    # `scope` would not be the nested object and the token would come out unscoped.
    parser_classes = [JSONParser]
    throttle_classes = [ScopedWriteThrottle]
    throttle_scope = "iot_credentials"
    serializer_class = CredentialsSerializer
    model = Device
    service_field_aliases = {"lifetime": "lifetimeSeconds"}

    def issuing(self, issue, **kwargs) -> Response:
        try:
            return _render(issue(actor=self.request.user, **kwargs))
        except credentials.ScopeRequired as exc:
            raise ScopeRequired(str(exc)) from exc
        except credentials.CredentialsUnavailable as exc:
            # The reason is for operators (it names settings and keys), not for every signed-in user.
            log.error("IoT credentials unavailable: %s", exc)
            raise IotUnavailable() from exc


@extend_schema(tags=["iot"], summary="Credentials for your app to connect to AWS IoT with your grants here",
               request=UserCredentialsRequestSerializer, responses={201: CredentialsSerializer})
class UserCredentialsView(CredentialsView):
    documented_errors = {"post": [409, 415, 503]}

    def post(self, request, tenant):
        data = self.validated(UserCredentialsRequestSerializer)
        if data.get("credential", vocabulary.SIGNED_CREDENTIAL) != vocabulary.SIGNED_CREDENTIAL:
            raise DomainError(ErrorCode.COMPACT_FOR_DEVICES_ONLY, "Compact tokens are for devices only; an app "
                              "gets signed credentials.", field="credential")
        scope = data.get("scope") or {}
        devices = group = None
        if "devices" in scope:
            wanted = set(scope["devices"])
            devices = list(selectors.devices_for(user=request.user, tenant=self.tenant).filter(pk__in=wanted))
            unknown = sorted(wanted - {d.pk for d in devices})
            if unknown:
                raise DomainError(ErrorCode.SCOPE_UNKNOWN, f"No such device: {', '.join(map(str, unknown[:10]))}.",
                                  field="scope")
        if "group" in scope:
            group = selectors.groups_for(user=request.user, tenant=self.tenant).filter(pk=scope["group"]).first()
            if group is None:
                raise DomainError(ErrorCode.SCOPE_UNKNOWN, f"No such group: {scope['group']}.", field="scope")
        return self.issuing(credentials.issue_user_credentials, tenant=self.tenant, scope_devices=devices,
                            scope_group=group, lifetime=data.get("lifetimeSeconds"))


@extend_schema(tags=["iot"], summary="Credentials the device itself connects with (owner or tenant admin)",
               request=DeviceCredentialsRequestSerializer, responses={201: CredentialsSerializer})
class DeviceCredentialsView(CredentialsView):
    documented_errors = {"post": [415, 503]}

    def post(self, request, tenant, device):
        device = self.visible_device(device)
        data = self.validated(DeviceCredentialsRequestSerializer)
        return self.issuing(credentials.issue_device_credentials, device=device,
                            lifetime=data.get("lifetimeSeconds"), credential=data["credential"])
