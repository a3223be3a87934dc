# JupyterHub for Bindery on one machine: DockerSpawner configured as the
# BinderHub chart configures KubeSpawner. The image and the token come from
# the launch's `user_options`; the server is a plain `jupyter-server` opened
# with that token, on host networking. Used by `scripts/quickstart` and the
# tests' hub fixture (`host/tests/support/hub.rs`), which set:
#   HUB_DIR            state (database, cookie secret, pid files)
#   HUB_PROXY_PORT     the public proxy; HUB_API_PORT the hub; HUB_PROXY_API_PORT the proxy's API
#   HUB_CHP            configurable-http-proxy
#   HUB_SERVICE_TOKEN  the `binder` service's API token (Bindery's JUPYTERHUB_API_TOKEN)
#   HUB_CONTAINER_PREFIX  names the servers' containers
# and, for Bindery's authenticated mode, optionally:
#   HUB_BINDER_OAUTH_REDIRECT  Bindery's `oauth_callback` URL: the `binder`
#                       service becomes an OAuth client, and people log in
#                       with DummyAuthenticator's shared HUB_DUMMY_PASSWORD
#   HUB_AUTH_STATES    JSON, user name → the auth_state their login keeps
#                       (as OAuthenticator keeps a forge token), encrypted
#                       with JUPYTERHUB_CRYPT_KEY; `binder` may read it
import json
import os
import socket

from dockerspawner import DockerSpawner
from tornado import web

env = os.environ


class BinderSpawner(DockerSpawner):
    """The BinderHub chart's spawner settings, on DockerSpawner."""

    async def start(self):
        if "token" not in self.user_options or "image" not in self.user_options:
            raise web.HTTPError(400, "token and image are required")
        self.image = self.user_options["image"]
        # Host networking: each server needs a port of its own.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return await super().start()

    async def get_ip_and_port(self):
        return "127.0.0.1", self.port

    def get_args(self):
        return [
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--ServerApp.base_url={self.server.base_url}",
            f"--ServerApp.token={self.user_options['token']}",
            "--ServerApp.trust_xheaders=True",
            "--ServerApp.allow_origin=*",
        ]


state = env["HUB_DIR"]
c.JupyterHub.bind_url = f"http://127.0.0.1:{env['HUB_PROXY_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{env['HUB_API_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{env['HUB_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.command = [env["HUB_CHP"]]
c.ConfigurableHTTPProxy.pid_file = f"{state}/jupyterhub-proxy.pid"
c.JupyterHub.authenticator_class = "null"
c.JupyterHub.db_url = f"sqlite:///{state}/hub.sqlite"
c.JupyterHub.cookie_secret_file = f"{state}/cookie_secret"
c.JupyterHub.pid_file = f"{state}/hub.pid"
c.JupyterHub.last_activity_interval = 5
c.JupyterHub.allow_named_servers = True
# An admin of the hub, whose servers the culler must never touch.
c.Authenticator.admin_users = {"hub-admin"}
c.JupyterHub.services = [{"name": "binder", "api_token": env["HUB_SERVICE_TOKEN"]}]
c.JupyterHub.load_roles = [{
    "name": "binder",
    "services": ["binder"],
    "scopes": ["admin:users", "admin:servers", "admin:groups", "groups", "tokens", "read:users:activity", "access:servers", "list:users"],
}]
if env.get("HUB_BINDER_OAUTH_REDIRECT"):
    # As upstream's authentication docs register BinderHub.
    c.JupyterHub.services[0].update({
        "oauth_client_id": "service-binder",
        "oauth_redirect_uri": env["HUB_BINDER_OAUTH_REDIRECT"],
        "oauth_no_confirm": True,
    })
    c.JupyterHub.load_roles.append({"name": "user", "scopes": ["self", "access:services"]})
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = env["HUB_DUMMY_PASSWORD"]
    c.Authenticator.allow_all = True
if env.get("HUB_AUTH_STATES"):
    from jupyterhub.auth import DummyAuthenticator

    _auth_states = json.loads(env["HUB_AUTH_STATES"])

    class AuthStateDummy(DummyAuthenticator):
        """DummyAuthenticator whose logins keep an auth_state, as OAuthenticator's do."""

        async def authenticate(self, handler, data):
            name = await super().authenticate(handler, data)
            if name is None:
                return None
            return {"name": name, "auth_state": _auth_states.get(name)}

    c.JupyterHub.authenticator_class = AuthStateDummy
    c.Authenticator.enable_auth_state = True
    c.JupyterHub.load_roles[0]["scopes"].append("admin:auth_state")
c.JupyterHub.spawner_class = BinderSpawner
c.DockerSpawner.cmd = ["jupyter-server"]
c.DockerSpawner.network_name = "host"
# No port bindings (host networking has none); the address is get_ip_and_port's.
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.allowed_images = "*"
c.DockerSpawner.remove = True
c.DockerSpawner.extra_host_config = {"init": True}
c.DockerSpawner.name_template = env["HUB_CONTAINER_PREFIX"] + "-{username}-{servername}"
c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": "5", "JUPYTERHUB_ALLOW_TOKEN_IN_URL": "1"}
# Generous: a test starts fifty servers at once on two cores.
c.Spawner.start_timeout = 240
c.Spawner.http_timeout = 240
