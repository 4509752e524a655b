print("ringcast-kv")
