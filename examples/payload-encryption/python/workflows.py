"""Workflow and activities shared by name with the other language examples (../README.md).

Workflow modules are re-imported inside the SDK's sandbox: this one imports only temporalio, never
the codec (which runs outside the sandbox, in the client's data converter).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="Greet")
async def greet(text: str) -> str:
    return f"processed: {text}"


@activity.defn(name="PythonActivity")
async def python_activity(s: str) -> str:
    """Called by the Go `CrossLanguageWorkflow` on task queue `codec-cross-python`."""
    return f"{s} | python"


@workflow.defn(name="EncryptedWorkflow")
class EncryptedWorkflow:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(
            greet, text, start_to_close_timeout=timedelta(seconds=30)
        )
