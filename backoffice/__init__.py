"""The back office: what staff run the business with.

The admin site and its pages (financial dashboard, plugins), the admin views
that join several apps (the order page, users with erasure), the audit log of
staff actions, data rights (export, erasure) and the staff commands
(`erase_user`, `replay_events`).

The rule: the back office may import every product app; no product app
imports it. It listens to them instead (the audit log's `post_save`
receivers, the admin site wrapping every registered ModelAdmin).

Its models (`ApiToken`, `AuditEntry`, and the permissions its pages check,
`platform_core.view_dashboard` and the like) stay in `platform_core`: moving
them would move their tables and every permission granted on them, for no
change in behaviour.
"""
