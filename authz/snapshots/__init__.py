"""The snapshot pipeline to DynamoDB (docs/snapshots.md): compile a principal's
grants, record the change in the outbox, push it conditionally, check the table."""
