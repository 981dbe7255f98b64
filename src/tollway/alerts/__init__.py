"""Alerts: rules an operator sets, checked now and then, sent to webhooks (generic JSON, Slack, Feishu).

- ``config``: a rule's body validated, its webhook URL and Feishu secret sealed and masked;
- ``checks``: what each kind of rule finds (quota, low_balance, credential, error_rate,
  latency_p99, stranded_settlement, task_failures), the debounce and the p99;
- ``formats``: the payloads (and Feishu's signature), pure;
- ``sender``: the webhook posts; ``engine``: the periodic ``AlertEngine``;
- ``routes``: ``/admin/alert/...``; ``cli``: ``tollway alerts ...``.

Rules and firings are stored by ``store.alerts``.
"""
