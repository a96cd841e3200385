"""The AWS IoT custom authorizer. Imports the standard library, cryptography
and boto3 only: never Django, another project package or PyJWT (the zip
bundles cryptography alone; tests/lambda_bridge/test_imports.py checks)."""
