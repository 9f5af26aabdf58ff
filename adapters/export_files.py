"""Where tenant exports live (ADR 0016): `{export_dir}/{tenant_id}/{export_id}/` holds one
JSON-lines file per table while the export runs, then `{export_id}.zip` with them and a
manifest. The API and the worker must see the same directory (`BILLING_EXPORT_DIR`: the same
host in `billing dev`, a shared volume in compose). Everything is streamed: no table is held in
memory, whatever its size."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


class ExportFiles:
    def __init__(self, base: Path) -> None:
        self.base = base

    def _tenant_dir(self, tenant_id: str) -> Path:
        return self.base / tenant_id

    def staging(self, tenant_id: str, export_id: str) -> Path:
        return self._tenant_dir(tenant_id) / export_id

    def zip_path(self, tenant_id: str, export_id: str) -> Path:
        return self._tenant_dir(tenant_id) / f"{export_id}.zip"

    async def write_table(
        self, tenant_id: str, export_id: str, table: str, rows: AsyncIterator[Mapping[str, Any]]
    ) -> tuple[int, str]:
        """Stream rows into `{table}.jsonl`; (rows written, sha256 of the file). Rewritten from
        scratch on a retry."""
        directory = self.staging(tenant_id, export_id)
        directory.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        count = 0
        with (directory / f"{table}.jsonl").open("wb") as out:
            async for row in rows:
                line = json.dumps(row, ensure_ascii=False, sort_keys=True).encode() + b"\n"
                out.write(line)
                digest.update(line)
                count += 1
        return count, digest.hexdigest()

    def assemble(
        self, tenant_id: str, export_id: str, manifest: dict[str, Any]
    ) -> tuple[Path, int, str]:
        """Zip the tables and the manifest (written beside them) into `{export_id}.zip`,
        atomically (a partial file is never visible); (path, size, sha256 of the zip)."""
        directory = self.staging(tenant_id, export_id)
        target = self.zip_path(tenant_id, export_id)
        partial = target.with_suffix(".zip.part")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
            for table in manifest["tables"]:
                archive.write(directory / f"{table}.jsonl", arcname=f"{table}.jsonl")
        os.replace(partial, target)
        shutil.rmtree(directory, ignore_errors=True)
        digest = hashlib.sha256()
        with target.open("rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        return target, target.stat().st_size, digest.hexdigest()

    def remove(self, tenant_id: str, export_id: str) -> None:
        self.zip_path(tenant_id, export_id).unlink(missing_ok=True)
        shutil.rmtree(self.staging(tenant_id, export_id), ignore_errors=True)
