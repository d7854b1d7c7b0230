"""Mosquitto for rankcast: configuration and ACL templates, accounts, test certificates, and running it.

The templates mosquitto.conf and acl live beside this file (TEMPLATE_DIR). A broker data directory
(BrokerLayout) holds the rendered config, ACL, password file, certificates and the persistence database;
`rankcast broker` drives these functions.
"""

from broker_config.certs import make_test_ca
from broker_config.errors import BrokerSetupError, NotPreparedError, ToolError
from broker_config.layout import BrokerLayout
from broker_config.render import TEMPLATE_DIR, Listeners, prepare, render_config
from broker_config.run import exec_broker, free_port, free_ports, start_broker, stop_process, wait_listening
from broker_config.users import ROLES, add_devices, add_user

__all__ = [
    "ROLES", "TEMPLATE_DIR", "BrokerLayout", "BrokerSetupError", "Listeners", "NotPreparedError", "ToolError",
    "add_devices", "add_user", "exec_broker", "free_port", "free_ports", "make_test_ca", "prepare", "render_config",
    "start_broker", "stop_process", "wait_listening",
]
