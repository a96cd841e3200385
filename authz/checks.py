"""Settings the authorizer would otherwise reject one connection at a time."""
import re

from django.conf import settings
from django.core import checks

from lambda_bridge import config, tokens, vocabulary

from .tokens.credentials import MIN_LIFETIME_SECONDS


@checks.register(checks.Tags.security)
def token_settings(app_configs, **kwargs):
    errors = []
    for name in ("USER_TOKEN_LIFETIME_SECONDS", "DEVICE_TOKEN_LIFETIME_SECONDS"):
        value = getattr(settings, name)
        if not MIN_LIFETIME_SECONDS <= value <= tokens.MAX_LIFETIME:
            errors.append(checks.Error(
                f"{name} is {value}; it must be {MIN_LIFETIME_SECONDS}..{tokens.MAX_LIFETIME} seconds",
                hint="The authorizer refuses tokens with under 300 s left and lifetimes over 31 days.",
                id="authz.E001"))
    if not re.fullmatch(vocabulary.TOKEN_KEY_NAME, settings.IOT_TOKEN_KEY_NAME):
        errors.append(checks.Error("IOT_TOKEN_KEY_NAME must be letters, digits, _ or - (as AWS IoT requires)",
                                   id="authz.E002"))
    if not re.fullmatch(r"[0-9]{12}", settings.AWS_ACCOUNT_ID):
        errors.append(checks.Error("AWS_ACCOUNT_ID must be the 12-digit AWS account id (the Lambda's "
                                   "DEVSHARE_AWS_ACCOUNT_ID)", id="authz.E003"))
    errors += _propagation()
    return errors


def _propagation() -> list[checks.Error]:
    """A warm authorizer learns a new compact key only when its key cache
    expires (it never re-reads early for an unknown compact kid), so a key
    must be published this long before it signs (docs/signing-keys.md#the-compact-half)."""
    longest_cache = config.MAX_KEY_CACHE_SECONDS
    if settings.SIGNING_PROPAGATION_SECONDS >= longest_cache:
        return []
    return [checks.Error(
        f"SIGNING_PROPAGATION_SECONDS is {settings.SIGNING_PROPAGATION_SECONDS}; it must be at least "
        f"{longest_cache} (the authorizer's longest key cache)",
        hint="A compact token signed by a key published more recently is refused (unknown_kid) by warm Lambdas.",
        id="authz.E004")]
