"""The appliance's web UI: a Flask app (``app.create_app``) run as its own process, reading the
spool read-only.

It is a separate process so that a bug or crash here never touches a fax call in progress.  This
package file imports nothing: a module that needs one part of the UI (first boot, the web
certificate) does not load every page with it.
"""
