#include "edge/auth.h"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "boost/url/parse.hpp"
#include "google/protobuf/util/json_util.h"

namespace roomcast::edge {
namespace {

absl::Status Refused(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("invalid token: ", why));
}

const google::protobuf::RepeatedPtrField<std::string>& ListOf(const v1::Grants& grants, RoomOp op) {
  switch (op) {
    case RoomOp::kSubscribe:
      return grants.subscribe();
    case RoomOp::kPublish:
      return grants.publish();
    case RoomOp::kPresence:
      return grants.presence();
    case RoomOp::kHistory:
      break;
  }
  return grants.history();
}

// Parses a JSON text that must be an object; nullopt otherwise.
std::optional<boost::json::object> ParseObject(absl::string_view text) {
  boost::system::error_code ec;
  boost::json::value value =
      boost::json::parse(boost::json::string_view(text.data(), text.size()), ec);
  if (ec || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

// The `alg` of the token's header, read before any verification so the key
// decides which algorithm is acceptable, never the token.
absl::StatusOr<std::string> HeaderAlg(absl::string_view token) {
  size_t dot = token.find('.');
  if (dot == absl::string_view::npos) return Refused("not a JWT");
  std::string header;
  if (!absl::WebSafeBase64Unescape(token.substr(0, dot), &header)) {
    return Refused("malformed header");
  }
  std::optional<boost::json::object> object = ParseObject(header);
  if (!object.has_value()) return Refused("malformed header");
  const boost::json::value* alg = object->if_contains("alg");
  if (alg == nullptr || !alg->is_string()) return Refused("header has no alg");
  return std::string(alg->as_string());
}

struct JwtDeleter {
  void operator()(jwt_t* jwt) const { jwt_free(jwt); }
};

// A numeric claim as seconds since the epoch; nullopt when absent.
absl::StatusOr<std::optional<int64_t>> TimeClaim(const boost::json::object& claims,
                                                 const char* name) {
  const boost::json::value* v = claims.if_contains(name);
  if (v == nullptr) return std::optional<int64_t>();
  if (v->is_int64()) return std::optional<int64_t>(v->as_int64());
  if (v->is_uint64() && v->as_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    return std::optional<int64_t>(static_cast<int64_t>(v->as_uint64()));
  }
  if (v->is_double()) return std::optional<int64_t>(static_cast<int64_t>(v->as_double()));
  return Refused(absl::StrCat("claim ", name, " is not a number"));
}

absl::Status ParseRooms(const boost::json::value& rooms, v1::Grants& grants) {
  if (!rooms.is_object()) return Refused("claim rooms is not an object");
  for (const auto& [key, list] : rooms.as_object()) {
    google::protobuf::RepeatedPtrField<std::string>* out = nullptr;
    if (key == "subscribe") {
      out = grants.mutable_subscribe();
    } else if (key == "publish") {
      out = grants.mutable_publish();
    } else if (key == "presence") {
      out = grants.mutable_presence();
    } else if (key == "history") {
      out = grants.mutable_history();
    } else {
      continue;  // Unknown operations grant nothing.
    }
    if (!list.is_array())
      return Refused(absl::StrCat("rooms.", std::string(key), " is not a list"));
    for (const boost::json::value& room : list.as_array()) {
      if (!room.is_string() || room.as_string().empty()) {
        return Refused(absl::StrCat("rooms.", std::string(key), " holds a non-name"));
      }
      out->Add(std::string(room.as_string()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool Allowed(const v1::Grants& grants, RoomOp op, absl::string_view room) {
  if (grants.all()) return true;
  for (const std::string& entry : ListOf(grants, op)) {
    if (absl::EndsWith(entry, "*")) {
      if (absl::StartsWith(room, absl::string_view(entry).substr(0, entry.size() - 1))) {
        return true;
      }
    } else if (entry == room) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::unique_ptr<TokenVerifier>> TokenVerifier::Create(std::string hmac_secret,
                                                                     std::string public_key_pem) {
  if (hmac_secret.empty() && public_key_pem.empty()) {
    return absl::InvalidArgumentError("no token key: give an HMAC secret or a public key");
  }
  PublicAlg public_alg = PublicAlg::kNone;
  if (!public_key_pem.empty()) {
    BIO* bio = BIO_new_mem_buf(public_key_pem.data(), static_cast<int>(public_key_pem.size()));
    EVP_PKEY* key = bio == nullptr ? nullptr : PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
    if (key != nullptr) {
      switch (EVP_PKEY_base_id(key)) {
        case EVP_PKEY_RSA:
          public_alg = PublicAlg::kRs256;
          break;
        case EVP_PKEY_EC:
          public_alg = PublicAlg::kEs256;
          break;
        default:
          break;
      }
      EVP_PKEY_free(key);
    }
    BIO_free(bio);
    if (public_alg == PublicAlg::kNone) {
      return absl::InvalidArgumentError(
          "the public key is not a PEM RSA or EC public key (-----BEGIN PUBLIC KEY-----)");
    }
  }
  return std::unique_ptr<TokenVerifier>(
      new TokenVerifier(std::move(hmac_secret), std::move(public_key_pem), public_alg));
}

absl::StatusOr<Identity> TokenVerifier::Verify(absl::string_view token, absl::Time now) const {
  if (token.empty()) return absl::UnauthenticatedError("a token is required");
  if (token.size() > kMaxTokenBytes) return Refused("too long");
  absl::StatusOr<std::string> alg = HeaderAlg(token);
  if (!alg.ok()) return alg.status();
  // The key decides the algorithm: each configured key allows exactly one.
  const std::string* key = nullptr;
  jwt_alg_t expected = JWT_ALG_NONE;
  if (*alg == "HS256" && !hmac_secret_.empty()) {
    key = &hmac_secret_;
    expected = JWT_ALG_HS256;
  } else if (*alg == "RS256" && public_alg_ == PublicAlg::kRs256) {
    key = &public_key_pem_;
    expected = JWT_ALG_RS256;
  } else if (*alg == "ES256" && public_alg_ == PublicAlg::kEs256) {
    key = &public_key_pem_;
    expected = JWT_ALG_ES256;
  } else {
    return Refused(absl::StrCat("algorithm ", alg->substr(0, 16), " is not accepted"));
  }
  const std::string text(token);
  jwt_t* raw = nullptr;
  int rc = jwt_decode(&raw, text.c_str(), reinterpret_cast<const unsigned char*>(key->data()),
                      static_cast<int>(key->size()));
  std::unique_ptr<jwt_t, JwtDeleter> jwt(raw);
  if (rc != 0 || jwt == nullptr) return Refused("bad signature or malformed");
  if (jwt_get_alg(jwt.get()) != expected) return Refused("algorithm mismatch");

  char* json = jwt_get_grants_json(jwt.get(), nullptr);
  if (json == nullptr) return Refused("no claims");
  std::optional<boost::json::object> claims = ParseObject(json);
  std::free(json);
  if (!claims.has_value()) return Refused("claims are not a JSON object");

  Identity identity;
  absl::StatusOr<std::optional<int64_t>> exp = TimeClaim(*claims, "exp");
  if (!exp.ok()) return exp.status();
  if (!exp->has_value()) return Refused("claim exp is required");
  identity.expires = absl::FromUnixSeconds(**exp);
  if (now >= identity.expires) return Refused("expired");
  absl::StatusOr<std::optional<int64_t>> nbf = TimeClaim(*claims, "nbf");
  if (!nbf.ok()) return nbf.status();
  if (nbf->has_value() && now < absl::FromUnixSeconds(**nbf)) return Refused("not yet valid");

  if (const boost::json::value* sub = claims->if_contains("sub")) {
    if (!sub->is_string()) return Refused("claim sub is not a string");
    identity.user_id = std::string(sub->as_string());
  }
  if (const boost::json::value* info = claims->if_contains("info")) {
    if (!info->is_object()) return Refused("claim info is not a JSON object");
    if (!google::protobuf::util::JsonStringToMessage(boost::json::serialize(*info), &identity.info)
             .ok()) {
      return Refused("claim info is not representable");
    }
  }
  if (const boost::json::value* rooms = claims->if_contains("rooms")) {
    if (absl::Status parsed = ParseRooms(*rooms, identity.grants); !parsed.ok()) return parsed;
  }
  return identity;
}

absl::StatusOr<Identity> Authenticate(const TokenVerifier* verifier, bool allow_anonymous,
                                      const std::optional<std::string>& token, absl::Time now) {
  if (verifier == nullptr || (!token.has_value() && allow_anonymous)) {
    Identity anonymous;
    anonymous.grants.set_all(true);
    return anonymous;
  }
  if (!token.has_value()) return absl::UnauthenticatedError("a token is required");
  return verifier->Verify(*token, now);
}

void AnnounceIdentity(const Identity& identity, v1::ClientConnected& connected) {
  connected.mutable_client()->set_user_id(identity.user_id);
  if (identity.info.fields_size() > 0) *connected.mutable_client()->mutable_info() = identity.info;
  *connected.mutable_grants() = identity.grants;
}

std::optional<std::string> TokenOf(absl::string_view target, absl::string_view authorization) {
  auto url = boost::urls::parse_origin_form(boost::urls::string_view(target.data(), target.size()));
  if (url) {
    for (auto param : url->params()) {
      if (param.key == "token") return std::string(param.value);
    }
  }
  constexpr absl::string_view kBearer = "Bearer ";
  if (authorization.size() > kBearer.size() &&
      absl::EqualsIgnoreCase(authorization.substr(0, kBearer.size()), kBearer)) {
    return std::string(authorization.substr(kBearer.size()));
  }
  return std::nullopt;
}

std::string UnauthorizedBody(absl::string_view message) {
  boost::json::object error;
  error["code"] = static_cast<int>(absl::StatusCode::kUnauthenticated);
  error["message"] = boost::json::string_view(message.data(), message.size());
  boost::json::object body;
  body["error"] = std::move(error);
  return boost::json::serialize(body);
}

}  // namespace roomcast::edge
