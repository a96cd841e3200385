class SnapshotTable:
    """A snapshot table of one test (the `table` fixture), read back as items or snapshots."""

    def __init__(self, name: str):
        self.name = name

    def items(self) -> dict[str, dict]:
        from authz.snapshots import store

        pages = store.client().get_paginator("scan").paginate(TableName=self.name, ConsistentRead=True)
        return {item["pk"]["S"]: item for page in pages for item in page["Items"]}

    def snapshots(self) -> dict:
        from lambda_bridge.snapshot import from_item

        return {key: from_item(item) for key, item in self.items().items()}

    def snapshot(self, key: str):
        return self.snapshots().get(key)
