"""Players authenticated by a JSON Web Token, checked before any room is made for them.

    pip install PyJWT
    GREENROOM_JWT_SECRET=change-me greenroom serve examples/auth_jwt.py:server

The game's login service signs an HS256 token with the shared secret (``issue_token`` below
does what it would); the front end hands it to the official client, which sends it as
``Authorization: Bearer`` with every matchmaking request (and as ``_authToken`` on the room
socket)::

    client.auth.token = token;                 // colyseus.js 0.16, @colyseus/sdk 0.17 / 0.18
    const room = await client.joinOrCreate("game");

``GameRoom.on_auth_request`` verifies it in the matchmaking request itself: a missing, forged or
expired token is refused there (HTTP 525 with the reason, "token expired" for an expired one),
so a refused player never costs a room or a seat. The token's claims become ``client.auth``, in
whichever worker the room lives (they travel with the seat reservation).

``python examples/auth_jwt.py ada`` prints a token for player "ada", valid one hour.
"""

import os
import sys
import time

import jwt

from greenroom import AuthError, Room, Server

#: The secret the login service signs with. Never ship the default: set GREENROOM_JWT_SECRET.
SECRET = os.environ.get("GREENROOM_JWT_SECRET", "dev-secret-change-me-dev-secret-change-me")
ALGORITHMS = ["HS256"]  # never take the algorithm from the token itself


def issue_token(subject, seconds=3600, **claims):
    """What the login service does: a signed token for ``subject``, valid ``seconds``."""
    now = int(time.time())
    return jwt.encode({"sub": subject, "iat": now, "exp": now + seconds, **claims}, SECRET,
                      algorithm="HS256")


def verify(token):
    """The token's claims; AuthError (525) with the reason when it cannot be trusted."""
    if not token:
        raise AuthError("no token: set client.auth.token")
    try:
        return jwt.decode(token, SECRET, algorithms=ALGORITHMS, options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None


class GameRoom(Room):
    max_clients = 4

    @classmethod
    def on_auth_request(cls, token, options, request):
        # In the matchmaking request, before a room is found or created: claims -> client.auth.
        return verify(token)

    def on_create(self, options):
        self.on_message("whoami", lambda client, message: client.send("whoami", client.auth))

    def on_join(self, client, options, auth):
        # auth is client.auth: the claims on_auth_request returned.
        client.send("welcome", {"sub": auth["sub"], "claims": auth, "processId": self.process_id})


server = Server(dialects={"/v18": "v5"})  # @colyseus/sdk 0.18 on ws://host/v18
server.define("game", GameRoom)

if __name__ == "__main__":
    print(issue_token(sys.argv[1] if len(sys.argv) > 1 else "ada"))
