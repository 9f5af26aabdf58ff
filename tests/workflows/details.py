"""What the Temporal UI shows as a workflow's current details (`workflow.set_current_details`),
read the way the UI reads it: the built-in `__temporal_workflow_metadata` query."""

from __future__ import annotations

from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)
