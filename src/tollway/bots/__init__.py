"""Chat bots on the gateway: Feishu/Lark apps whose messages are answered by a model, paid by a key."""
