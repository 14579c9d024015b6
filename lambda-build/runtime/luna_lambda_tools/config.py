"""The lambda's configuration, as handed over by the platform through environment variables.

| variable | meaning | default |
|---|---|---|
| LAMBDA_PORT | port to serve on | 8000 |
| LAMBDA_HOST | address to bind | 0.0.0.0 |
| LAMBDA_LISTEN_FD | an open listening socket to serve on instead of binding LAMBDA_HOST:LAMBDA_PORT (the local orchestrator's; 0 is stdin) | none |
| LAMBDA_TYPE | standalone, handlers or tasks | standalone |
| LAMBDA_VERSION | lambda version, echoed as `Lambda-Version` | 1 |
| LAMBDA_ID | lambda id | "" |
| LAMBDA_WORKERS | worker processes | 1 |
| LAMBDA_USER_CONFIG_FILE | JSON file with the user config | none (empty config) |
| LAMBDA_USER_CONFIG | the user config as JSON text (used when there is no file) | none |
| LAMBDA_MAX_BODY_BYTES | largest request body, else 413 | 16777216 |
| LAMBDA_SHUTDOWN_TIMEOUT | seconds in-flight requests get on SIGTERM | 10 |
| LAMBDA_LOG_LEVEL | logger level | INFO |
"""

import json
import os


def _int(name, default, env=None):
    raw = (os.environ if env is None else env).get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"luna-lambda runtime: {name}={raw!r} is not an integer") from None


class LambdaConfig:
    """Settings of this lambda process. `userConfig` is the user config (a dict).

    It is also a read-only mapping over the user config, as the original's `lambdaConfig`
    storage: `lambdaConfig["name"]`, `lambdaConfig["users"][0]["name"]`, `get`, `in`,
    iteration, `keys()`, `items()`, `values()`. A missing key raises `KeyError` naming it.
    A `PUT .../config` restarts the lambda, so this always reads the current config.
    """

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.port = int(env.get("LAMBDA_PORT") or 8000)
        self.host = env.get("LAMBDA_HOST") or "0.0.0.0"
        self.listenFd = _int("LAMBDA_LISTEN_FD", None, env)
        self.lambdaType = env.get("LAMBDA_TYPE") or "standalone"
        self.version = env.get("LAMBDA_VERSION") or "1"
        self.lambdaId = env.get("LAMBDA_ID") or ""
        self.workers = _int("LAMBDA_WORKERS", 1, env)
        self.maxBodyBytes = _int("LAMBDA_MAX_BODY_BYTES", 16 * 1024 * 1024, env)
        self.shutdownTimeout = _int("LAMBDA_SHUTDOWN_TIMEOUT", 10, env)
        self.userConfigFile = env.get("LAMBDA_USER_CONFIG_FILE") or ""
        self.userConfigText = env.get("LAMBDA_USER_CONFIG") or ""
        self.userConfig = self._load_user_config()

    def _load_user_config(self):
        path = self.userConfigFile
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
        else:
            path, text = "LAMBDA_USER_CONFIG", self.userConfigText.strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as e:
            raise SystemExit(f"luna-lambda runtime: user config {path} is not valid JSON: {e}") from None
        return value if isinstance(value, dict) else {}

    # The mapping protocol over the user config ----------------------------------------------

    def __getitem__(self, key):
        try:
            return self.userConfig[key]
        except KeyError:
            known = ", ".join(sorted(map(str, self.userConfig))) or "none (the user config is empty)"
            raise KeyError(f"lambdaConfig has no key {key!r}; the user config's keys: {known}") from None

    def get(self, key, default=None):
        return self.userConfig.get(key, default)

    def __contains__(self, key):
        return key in self.userConfig

    def __iter__(self):
        return iter(self.userConfig)

    def __len__(self):
        return len(self.userConfig)

    def keys(self):
        return self.userConfig.keys()

    def items(self):
        return self.userConfig.items()

    def values(self):
        return self.userConfig.values()


lambdaConfig = LambdaConfig()
