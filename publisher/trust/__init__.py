"""The trust root on the publisher's side, torch-free: root files (roots) and the edits that make the next
version (edits); publisher.release.roots puts them on the broker. Root keys sign offline; only signed
roots travel, and the publisher host needs no root key.
"""
