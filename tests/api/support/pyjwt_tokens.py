"""Keys and tokens made by an independent JWT library (PyJWT), for Portico's auth tests.

stdin:  {"keys": [{"kid": "rs1", "alg": "RS256"}, ...],
         "tokens": [{"kid": "rs1", "claims": {...}, "alg": <optional override>}, ...]}
        A token may instead carry "private_jwk" (a private JWK, e.g. an identity provider's
        signing key) and "alg"; "headers" replaces the JOSE header fields besides alg (no kid
        unless given there).
stdout: {"jwks": {"rs1": <public JWK>, ...}, "pem": {"rs1": <public PEM>}, "tokens": [...]}
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

request = json.load(sys.stdin)
private = {}
out = {"jwks": {}, "pem": {}, "tokens": []}
for key in request["keys"]:
    kid, alg = key["kid"], key["alg"]
    if alg.startswith("RS") or alg.startswith("PS"):
        secret = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        to_jwk = jwt.algorithms.RSAAlgorithm.to_jwk
    elif alg == "ES256":
        secret = ec.generate_private_key(ec.SECP256R1())
        to_jwk = jwt.algorithms.ECAlgorithm.to_jwk
    elif alg == "ES384":
        secret = ec.generate_private_key(ec.SECP384R1())
        to_jwk = jwt.algorithms.ECAlgorithm.to_jwk
    elif alg == "EdDSA":
        secret = ed25519.Ed25519PrivateKey.generate()
        to_jwk = jwt.algorithms.OKPAlgorithm.to_jwk
    else:
        sys.exit(f"unsupported alg {alg}")
    private[kid] = (secret, alg)
    jwk = json.loads(to_jwk(secret.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    out["jwks"][kid] = jwk
    out["pem"][kid] = secret.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
for token in request["tokens"]:
    if "private_jwk" in token:
        secret, alg = jwt.PyJWK.from_dict(token["private_jwk"]).key, token["alg"]
        headers = token.get("headers", {})
    else:
        secret, alg = private[token["kid"]]
        alg = token.get("alg", alg)
        headers = {"kid": token["kid"]} if token.get("with_kid", True) else None
    out["tokens"].append(jwt.encode(token["claims"], secret, algorithm=alg, headers=headers))
json.dump(out, sys.stdout)
