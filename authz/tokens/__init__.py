"""The token side: signing keys and their rotation, credential issuance, the
AWS IoT control plane, and the local authorizer simulator."""
