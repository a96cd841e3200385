"""The AWS IoT custom authorizer. Imports the standard library, PyJWT,
cryptography and boto3 only: never Django or another project package."""
