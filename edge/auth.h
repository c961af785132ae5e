// Connection tokens (JWT) at the edge, without Beast: verifies a token once
// per connection and turns it into an Identity (user id, presence info, room
// grants), and answers whether an identity may do an operation on a room.
//
// Verification (libjwt): the signature with the configured key only; the
// algorithm pinned to what that key allows (HS256 for the HMAC secret, RS256
// for an RSA public key, ES256 for an EC one), so `alg: none` and HS/RS
// confusion (an HS256 token "signed" with the public key's PEM text) are
// refused before libjwt sees the token. `exp` is required and enforced, `nbf`
// when present. Claims: `sub` (string, the user id), `info` (a JSON object,
// shown in presence), `rooms` ({"subscribe","publish","presence","history"}:
// lists of exact room names or prefixes ending in `*`).
//
// TokenVerifier is immutable after Create and safe to share between
// threads. Every failure is a Status (UNAUTHENTICATED with a reason fit to
// show the client), never a crash: tokens are untrusted input.
#ifndef ROOMCAST_EDGE_AUTH_H_
#define ROOMCAST_EDGE_AUTH_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "roomcast/v1/roomcast.pb.h"

namespace roomcast::edge {

// Who a verified token says the client is.
struct Identity {
  std::string user_id;                          // `sub`; empty for anonymous clients.
  google::protobuf::Struct info;                // `info`.
  v1::Grants grants;                            // `rooms`; all = true for anonymous clients.
  absl::Time expires = absl::InfiniteFuture();  // `exp`.
};

enum class RoomOp { kSubscribe, kPublish, kPresence, kHistory };

// Whether `grants` allow `op` on `room`: grants.all, or an entry of the op's
// list equal to `room`, or ending in `*` and a prefix of it.
bool Allowed(const v1::Grants& grants, RoomOp op, absl::string_view room);

// Largest token accepted (longer ones are refused unparsed).
inline constexpr size_t kMaxTokenBytes = 8 * 1024;

class TokenVerifier {
 public:
  // From the key material (file contents): `hmac_secret` for HS256 and/or
  // `public_key_pem` (RSA → RS256, EC P-256 → ES256). INVALID_ARGUMENT when
  // both are empty or the PEM is not a usable public key.
  static absl::StatusOr<std::unique_ptr<TokenVerifier>> Create(std::string hmac_secret,
                                                               std::string public_key_pem);

  // The identity of `token` at time `now`, or UNAUTHENTICATED with a reason.
  absl::StatusOr<Identity> Verify(absl::string_view token, absl::Time now) const;

 private:
  enum class PublicAlg { kNone, kRs256, kEs256 };
  TokenVerifier(std::string hmac_secret, std::string public_key_pem, PublicAlg public_alg)
      : hmac_secret_(std::move(hmac_secret)),
        public_key_pem_(std::move(public_key_pem)),
        public_alg_(public_alg) {}

  const std::string hmac_secret_;
  const std::string public_key_pem_;
  const PublicAlg public_alg_;
};

// The identity of a new connection: anonymous (every grant) when `verifier`
// is null, or when no token was given and `allow_anonymous`; else the
// token's identity, or UNAUTHENTICATED (no token, or a refused one: a bad
// token is refused even where anonymous clients are allowed).
absl::StatusOr<Identity> Authenticate(const TokenVerifier* verifier, bool allow_anonymous,
                                      const std::optional<std::string>& token, absl::Time now);

// Fills `connected` (an EdgeToCore.client_connected) with the identity.
void AnnounceIdentity(const Identity& identity, v1::ClientConnected& connected);

// The token of a request: `?token=` in `target` (origin-form) first, else an
// `Authorization: Bearer` header value; nullopt when neither is present.
std::optional<std::string> TokenOf(absl::string_view target, absl::string_view authorization);

// The JSON body of a 401 answer: {"error":{"code":16,"message":"..."}}.
std::string UnauthorizedBody(absl::string_view message);

}  // namespace roomcast::edge

#endif  // ROOMCAST_EDGE_AUTH_H_
