"""The declared SFTP settings of a file drop (`adapter: files` with `directory: sftp://…`).

They sit in the same `source:` section as the file-drop settings (adapters/files.py); `SftpSettings` declares
only the SFTP ones (`SFTP_SETTINGS` lists their names), so that the file-drop model can include them
(e.g. `class FilesSettings(SftpSettings)`) and `SftpInbox` validates just its part.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tongban.retry import RetrySettings


class SftpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "password_env": "CQ_WSJKW_SFTP_PASSWORD", "known_hosts": "/etc/tongban/known_hosts", "timeout": 30,
        "retry": {"attempts": 3, "initial_wait": 0.5, "max_wait": 10}}]})

    password_env: str | None = Field(None, description="Environment variable holding the SFTP password.")
    private_key_env: str | None = Field(None, description=(
        "Environment variable holding a private key: a file path or the key text itself."))
    private_key_passphrase_env: str | None = Field(None, description="Environment variable holding the key's passphrase.")
    known_hosts: str | None = Field("~/.ssh/known_hosts", description=(
        "known_hosts file that must hold the server's host key; `none` turns the check off (needs "
        "insecure_skip_host_check: true, sandbox only)."))
    insecure_skip_host_check: bool = Field(False, description="Confirms known_hosts: none (never for a real server).")
    timeout: float = Field(30, gt=0, description="Seconds for connecting and for each metadata operation.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retries of connection failures.")
    download_dir: str | None = Field(None, description="Where files are downloaded while read (default $TONGBAN_HOME/tmp/sftp).")


SFTP_SETTINGS = frozenset(SftpSettings.model_fields)
