"""The tables the GUI reads (docs/database.md), per dialect, as numbered migrations.

Each migration is a list of statements; ``rps_schema`` records the version reached so a
start only runs what is new. Column names are the contract; types differ per dialect.
A later version appends a new list: never edit one that has been released. (Version 1
is the first release; on MySQL prefer statements that can run twice, since DDL commits
on its own before the version row is written.)
"""

from __future__ import annotations

MYSQL: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS rps_events (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            created_at DATETIME(6) NOT NULL,
            action VARCHAR(16) NOT NULL,
            provider VARCHAR(32) NOT NULL,
            server INT NOT NULL,
            mac CHAR(12) NOT NULL,
            payload TEXT NOT NULL,
            state VARCHAR(16) NOT NULL,
            attempts INT NOT NULL DEFAULT 0,
            next_attempt_at DATETIME(6) NOT NULL,
            lease_until DATETIME(6) NULL,
            lease_owner VARCHAR(64) NULL,
            last_error TEXT NULL,
            updated_at DATETIME(6) NOT NULL,
            idempotency_key VARCHAR(64) NULL,
            slot INT NOT NULL DEFAULT 0,
            UNIQUE KEY ux_events_key (idempotency_key),
            KEY ix_events_state_id (state, id),
            KEY ix_events_state_due (state, next_attempt_at),
            KEY ix_events_device (provider, mac, state, id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE IF NOT EXISTS rps_devices (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            provider VARCHAR(32) NOT NULL,
            mac CHAR(12) NOT NULL,
            server INT NOT NULL,
            model VARCHAR(64) NULL,
            name VARCHAR(255) NULL,
            extension VARCHAR(64) NULL,
            status VARCHAR(16) NOT NULL,
            registered_at DATETIME NULL,
            last_message TEXT NOT NULL,
            url VARCHAR(1024) NULL,
            http_username VARCHAR(64) NULL,
            http_password VARCHAR(128) NULL,
            updated_at DATETIME(6) NOT NULL,
            ztp_fetched_at DATETIME NULL,
            ztp_model VARCHAR(64) NULL,
            ztp_firmware VARCHAR(64) NULL,
            ztp_ip VARCHAR(45) NULL,
            UNIQUE KEY ux_devices (provider, mac),
            KEY ix_devices_server (server)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE IF NOT EXISTS rps_credentials (
            provider VARCHAR(32) NOT NULL,
            server INT NOT NULL,
            access_key_id VARCHAR(255) NOT NULL,
            access_key_secret VARCHAR(255) NOT NULL,
            provisioning_url VARCHAR(1024) NULL,
            updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (provider, server)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        # The phone's side (docs/phone-side.md): each tenant's regular provisioning details.
        """CREATE TABLE IF NOT EXISTS rps_servers (
            server INT NOT NULL PRIMARY KEY,
            prov_url VARCHAR(1024) NOT NULL,
            http_user VARCHAR(255) NOT NULL,
            http_password VARCHAR(255) NOT NULL,
            updated_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    ],
    # 2: every vendor (docs/vendors/): credentials with each provider's own keys; a device's
    # serial number, Gigaset MAC-ID and URL key; per-server access of Poly-like vendors.
    [
        # MySQL 8 has no ADD COLUMN/CREATE INDEX IF NOT EXISTS: the migration skips a
        # column or index that exists (errors 1060, 1061), so a step can run twice.
        "ALTER TABLE rps_credentials ADD COLUMN params TEXT NULL",
        "ALTER TABLE rps_devices ADD COLUMN sn VARCHAR(64) NULL",
        "ALTER TABLE rps_devices ADD COLUMN mac_id VARCHAR(32) NULL",
        "ALTER TABLE rps_devices ADD COLUMN url_key VARCHAR(64) NULL",
        "ALTER TABLE rps_devices ADD COLUMN url_key_id VARCHAR(16) NULL",
        "CREATE UNIQUE INDEX ux_devices_url_key ON rps_devices (url_key_id)",
        """CREATE TABLE IF NOT EXISTS rps_server_access (
            provider VARCHAR(32) NOT NULL,
            server INT NOT NULL,
            http_username VARCHAR(64) NOT NULL,
            http_password VARCHAR(128) NOT NULL,
            updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (provider, server)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    ],
    # 3: fleet operations (docs/fleet.md): durable jobs, each server's extra vendor settings,
    # and an event that waits for another one (replacing a phone: remove, then add).
    [
        """CREATE TABLE IF NOT EXISTS rps_jobs (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            kind VARCHAR(16) NOT NULL,
            provider VARCHAR(32) NOT NULL,
            server INT NOT NULL,
            params TEXT NOT NULL,
            state VARCHAR(16) NOT NULL,
            done INT NOT NULL DEFAULT 0,
            total INT NULL,
            phase VARCHAR(16) NULL,
            result MEDIUMTEXT NULL,
            error TEXT NULL,
            runs INT NOT NULL DEFAULT 0,
            lease_owner VARCHAR(64) NULL,
            lease_until DATETIME(6) NULL,
            created_at DATETIME(6) NOT NULL,
            updated_at DATETIME(6) NOT NULL,
            KEY ix_jobs_state (state, id),
            KEY ix_jobs_kind (kind, provider, server, created_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE IF NOT EXISTS rps_server_settings (
            provider VARCHAR(32) NOT NULL,
            server INT NOT NULL,
            settings TEXT NOT NULL,
            updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (provider, server)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        "ALTER TABLE rps_events ADD COLUMN after_id BIGINT NULL",
        # /ztprov/ finds a phone by its login when the file it asks for names no MAC.
        "CREATE INDEX ix_devices_user ON rps_devices (http_username)",
    ],
    # 4: GET /devices pages in (server, provider, mac) order (keyset paging for the web
    # console); the index serves that order, and replaces the one on server alone (its
    # prefix). One ALTER, so it is applied whole or not at all.
    [
        """ALTER TABLE rps_devices DROP INDEX ix_devices_server,
            ADD INDEX ix_devices_order (server, provider, mac)""",
    ],
    # 5: secrets sealed at rest (docs/secrets.md). A sealed value is longer than the clear
    # one (TEXT holds any); url_key_id now holds a URL key's keyed hash (64 hex digits).
    # Which key the database is sealed with (and the one a rotation replaces), and the data
    # steps run after the SQL ones (sealing what older versions stored in clear).
    [
        """ALTER TABLE rps_devices MODIFY http_password TEXT NULL,
            MODIFY url_key TEXT NULL, MODIFY url_key_id VARCHAR(64) NULL""",
        "ALTER TABLE rps_credentials MODIFY access_key_secret TEXT NOT NULL",
        "ALTER TABLE rps_servers MODIFY http_password TEXT NOT NULL",
        "ALTER TABLE rps_server_access MODIFY http_password TEXT NOT NULL",
        """CREATE TABLE IF NOT EXISTS rps_secret_key (
            id INT NOT NULL PRIMARY KEY,
            key_id VARCHAR(16) NOT NULL,
            previous_key_id VARCHAR(16) NULL,
            updated_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE IF NOT EXISTS rps_data_steps (
            name VARCHAR(64) NOT NULL PRIMARY KEY,
            finished_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    ],
    # 6: webhooks (docs/webhooks.md): the outbox of notifications not yet delivered. A row
    # is written in the transaction of the change it reports and deleted once delivered
    # (or dropped); a device's rows go out in id order, one at a time.
    [
        """CREATE TABLE IF NOT EXISTS rps_webhooks (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            device VARCHAR(48) NOT NULL,
            body TEXT NOT NULL,
            created_at DATETIME(6) NOT NULL,
            attempts INT NOT NULL DEFAULT 0,
            next_attempt_at DATETIME(6) NOT NULL,
            lease_owner VARCHAR(64) NULL,
            lease_until DATETIME(6) NULL,
            last_error TEXT NULL,
            KEY ix_webhooks_device (device, id),
            KEY ix_webhooks_due (next_attempt_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    ],
    # 7: a device's timeline (docs/timeline.md): vendor calls, retries,
    # outcomes and the phone's requests, each a small JSON object, kept as long as events.
    [
        """CREATE TABLE IF NOT EXISTS rps_timeline (
            id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
            provider VARCHAR(32) NOT NULL,
            mac CHAR(12) NOT NULL,
            at DATETIME(6) NOT NULL,
            kind VARCHAR(16) NOT NULL,
            data TEXT NOT NULL,
            KEY ix_timeline_device (provider, mac, id),
            KEY ix_timeline_at (at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    ],
    # 8: the scheduler leases per (provider, server) in arrival order and finds the
    # servers with pending work without reading the whole backlog.
    [
        "CREATE INDEX ix_events_lane ON rps_events (state, provider, server, id)",
        # The device row shows pending from the intake on; what the vendor holds as of
        # the last finished event is kept apart (an update of a removed phone is refused).
        "ALTER TABLE rps_devices ADD COLUMN settled_status VARCHAR(16) NULL",
    ],
    # 9: several instances act as one (docs/instances.md): each instance's claim on a
    # vendor account's rate (its heartbeat), each account's throttling pause, and the
    # phones' Digest nonce keys (sealed) and the nonce counts already used.
    [
        """CREATE TABLE IF NOT EXISTS rps_rate_claims (
            account CHAR(32) NOT NULL,
            owner VARCHAR(64) NOT NULL,
            since DATETIME(6) NOT NULL,
            expires_at DATETIME(6) NOT NULL,
            PRIMARY KEY (account, owner),
            KEY ix_rate_claims_owner (owner)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE IF NOT EXISTS rps_account_pauses (
            account CHAR(32) NOT NULL PRIMARY KEY,
            paused_until DATETIME(6) NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE IF NOT EXISTS rps_ztp_keys (
            period BIGINT NOT NULL PRIMARY KEY,
            nonce_key TEXT NOT NULL,
            created_at DATETIME(6) NOT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE IF NOT EXISTS rps_ztp_nonces (
            nonce CHAR(43) NOT NULL PRIMARY KEY,
            nc BIGINT NOT NULL,
            expires_at DATETIME(6) NOT NULL,
            KEY ix_ztp_nonces_expiry (expires_at)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    ],
]

SQLITE: list[list[str]] = [
    [
        """CREATE TABLE IF NOT EXISTS rps_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            action TEXT NOT NULL,
            provider TEXT NOT NULL,
            server INTEGER NOT NULL,
            mac TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_until TEXT NULL,
            lease_owner TEXT NULL,
            last_error TEXT NULL,
            updated_at TEXT NOT NULL,
            idempotency_key TEXT NULL UNIQUE,
            slot INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX IF NOT EXISTS ix_events_state_id ON rps_events (state, id)",
        "CREATE INDEX IF NOT EXISTS ix_events_state_due ON rps_events (state, next_attempt_at)",
        "CREATE INDEX IF NOT EXISTS ix_events_device ON rps_events (provider, mac, state, id)",
        """CREATE TABLE IF NOT EXISTS rps_devices (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            provider TEXT NOT NULL,
            mac TEXT NOT NULL,
            server INTEGER NOT NULL,
            model TEXT NULL,
            name TEXT NULL,
            extension TEXT NULL,
            status TEXT NOT NULL,
            registered_at TEXT NULL,
            last_message TEXT NOT NULL,
            url TEXT NULL,
            http_username TEXT NULL,
            http_password TEXT NULL,
            updated_at TEXT NOT NULL,
            ztp_fetched_at TEXT NULL,
            ztp_model TEXT NULL,
            ztp_firmware TEXT NULL,
            ztp_ip TEXT NULL,
            UNIQUE (provider, mac)
        )""",
        "CREATE INDEX IF NOT EXISTS ix_devices_server ON rps_devices (server)",
        """CREATE TABLE IF NOT EXISTS rps_credentials (
            provider TEXT NOT NULL,
            server INTEGER NOT NULL,
            access_key_id TEXT NOT NULL,
            access_key_secret TEXT NOT NULL,
            provisioning_url TEXT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (provider, server)
        )""",
        """CREATE TABLE IF NOT EXISTS rps_servers (
            server INTEGER NOT NULL PRIMARY KEY,
            prov_url TEXT NOT NULL,
            http_user TEXT NOT NULL,
            http_password TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    ],
    [
        "ALTER TABLE rps_credentials ADD COLUMN params TEXT NULL",
        "ALTER TABLE rps_devices ADD COLUMN sn TEXT NULL",
        "ALTER TABLE rps_devices ADD COLUMN mac_id TEXT NULL",
        "ALTER TABLE rps_devices ADD COLUMN url_key TEXT NULL",
        "ALTER TABLE rps_devices ADD COLUMN url_key_id TEXT NULL",
        "CREATE UNIQUE INDEX IF NOT EXISTS ux_devices_url_key ON rps_devices (url_key_id)",
        """CREATE TABLE IF NOT EXISTS rps_server_access (
            provider TEXT NOT NULL,
            server INTEGER NOT NULL,
            http_username TEXT NOT NULL,
            http_password TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (provider, server)
                )""",
    ],
    [
        """CREATE TABLE IF NOT EXISTS rps_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            provider TEXT NOT NULL,
            server INTEGER NOT NULL,
            params TEXT NOT NULL,
            state TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NULL,
            phase TEXT NULL,
            result TEXT NULL,
            error TEXT NULL,
            runs INTEGER NOT NULL DEFAULT 0,
            lease_owner TEXT NULL,
            lease_until TEXT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS ix_jobs_state ON rps_jobs (state, id)",
        "CREATE INDEX IF NOT EXISTS ix_jobs_kind ON rps_jobs (kind, provider, server, created_at)",
        """CREATE TABLE IF NOT EXISTS rps_server_settings (
            provider TEXT NOT NULL,
            server INTEGER NOT NULL,
            settings TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (provider, server)
        )""",
        "ALTER TABLE rps_events ADD COLUMN after_id INTEGER NULL",
        "CREATE INDEX IF NOT EXISTS ix_devices_user ON rps_devices (http_username)",
    ],
    [  # 4: see MYSQL
        "CREATE INDEX IF NOT EXISTS ix_devices_order ON rps_devices (server, provider, mac)",
        "DROP INDEX IF EXISTS ix_devices_server",
    ],
    [  # 5: see MYSQL (SQLite's TEXT columns hold a sealed value as they are)
        """CREATE TABLE IF NOT EXISTS rps_secret_key (
            id INTEGER NOT NULL PRIMARY KEY,
            key_id TEXT NOT NULL,
            previous_key_id TEXT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS rps_data_steps (
            name TEXT NOT NULL PRIMARY KEY,
            finished_at TEXT NOT NULL
        )""",
    ],
    [  # 6: see MYSQL
        """CREATE TABLE IF NOT EXISTS rps_webhooks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            device TEXT NOT NULL,
            body TEXT NOT NULL,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            lease_owner TEXT NULL,
            lease_until TEXT NULL,
            last_error TEXT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS ix_webhooks_device ON rps_webhooks (device, id)",
        "CREATE INDEX IF NOT EXISTS ix_webhooks_due ON rps_webhooks (next_attempt_at)",
    ],
    [  # 7: see MYSQL
        """CREATE TABLE IF NOT EXISTS rps_timeline (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            provider TEXT NOT NULL,
            mac TEXT NOT NULL,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS ix_timeline_device ON rps_timeline (provider, mac, id)",
        "CREATE INDEX IF NOT EXISTS ix_timeline_at ON rps_timeline (at)",
    ],
    [  # 8: see MYSQL
        "CREATE INDEX IF NOT EXISTS ix_events_lane ON rps_events (state, provider, server, id)",
        "ALTER TABLE rps_devices ADD COLUMN settled_status TEXT NULL",
    ],
    [  # 9: see MYSQL
        """CREATE TABLE IF NOT EXISTS rps_rate_claims (
            account TEXT NOT NULL,
            owner TEXT NOT NULL,
            since TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            PRIMARY KEY (account, owner)
        )""",
        "CREATE INDEX IF NOT EXISTS ix_rate_claims_owner ON rps_rate_claims (owner)",
        """CREATE TABLE IF NOT EXISTS rps_account_pauses (
            account TEXT NOT NULL PRIMARY KEY,
            paused_until TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS rps_ztp_keys (
            period INTEGER NOT NULL PRIMARY KEY,
            nonce_key TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS rps_ztp_nonces (
            nonce TEXT NOT NULL PRIMARY KEY,
            nc INTEGER NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS ix_ztp_nonces_expiry ON rps_ztp_nonces (expires_at)",
    ],
]
