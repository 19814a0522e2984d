"""A load test bot (greenroom loadtest --script): send an echo each tick, check every answer.

Works against both servers' ``echo`` room (benchmarks/greenroom_app.py, colyseus_server.mjs).
A wrong answer raises, which the load tester counts in the summary's ``script_errors``.
"""


def on_join(bot):
    bot.data.update(sent=0, answered=0)


def on_tick(bot, delta_ms):
    bot.data["sent"] += 1
    bot.send("echo", {"n": bot.data["sent"], "from": bot.session_id})


def on_message(bot, message_type, message):
    if message_type == "welcome":
        return
    if message_type != "echo" or message.get("from") != bot.session_id:
        raise AssertionError(f"unexpected {message_type!r}: {message!r}")
    bot.data["answered"] += 1
    if message["n"] != bot.data["answered"]:
        raise AssertionError(f"echo {message['n']} arrived as answer {bot.data['answered']}")


def on_leave(bot, code):
    if code != 4000:
        raise AssertionError(f"left with {code}")
