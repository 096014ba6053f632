"""The auditors' and operators' web console (`tongban console --port P`): server-rendered pages over the store.

- `app.create_app(settings)`: the FastAPI application (Jinja2 templates, no JavaScript needed);
- `auth`: log-in, sessions in a signed cookie (HttpOnly, SameSite=Strict), CSRF tokens, roles;
- `users`: console users and their scrypt password hashes, in the store (`tongban console user add`);
- `views`: the pages — search, a case's timeline, quarantine and parked lists, operator replay;
- `indicators` and `chart`: per-department indicators (article 33) and their server-rendered SVG chart.

The console reads what the ledger and the store hold and reuses the operations the CLI runs (trace, list, replay):
it has no copy of any of them. Every page masks personal data (`tongban.codes.mask_text`)."""
