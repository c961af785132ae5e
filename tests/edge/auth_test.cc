// Connection tokens: every token here is minted by the test with libjwt (keys
// generated at test time with OpenSSL), one hostile or edge case per test.
#include "edge/auth.h"

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace roomcast::edge {
namespace {

constexpr char kSecret[] = "test-secret-of-thirty-two-bytes!";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

struct Pem {
  std::string private_key;
  std::string public_key;
};

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(size));
}

// A fresh key pair: "RSA" (2048 bits) or "EC" (P-256).
Pem NewKeyPair(bool rsa) {
  EVP_PKEY* key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
  EXPECT_NE(key, nullptr);
  BIO* priv = BIO_new(BIO_s_mem());
  BIO* pub = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(priv, key, nullptr, nullptr, 0, nullptr, nullptr);
  PEM_write_bio_PUBKEY(pub, key);
  Pem pem{BioText(priv), BioText(pub)};
  BIO_free(priv);
  BIO_free(pub);
  EVP_PKEY_free(key);
  return pem;
}

// Signs `claims_json` with `alg` and `key`.
std::string Mint(jwt_alg_t alg, const std::string& key, const std::string& claims_json) {
  jwt_t* jwt = nullptr;
  EXPECT_EQ(jwt_new(&jwt), 0);
  EXPECT_EQ(jwt_add_grants_json(jwt, claims_json.c_str()), 0);
  EXPECT_EQ(jwt_set_alg(jwt, alg, reinterpret_cast<const unsigned char*>(key.data()),
                        static_cast<int>(key.size())),
            0);
  char* text = jwt_encode_str(jwt);
  std::string token = text == nullptr ? "" : text;
  std::free(text);
  jwt_free(jwt);
  return token;
}

std::string Claims(absl::string_view extra = "") {
  return absl::StrCat(R"({"sub":"alice","exp":)", absl::ToUnixSeconds(kNow) + 60,
                      R"(,"info":{"name":"Alice"},"rooms":{"subscribe":["a","chat:*"],)",
                      R"("publish":["a"],"presence":["a"],"history":["a"]})", extra, "}");
}

std::string B64(absl::string_view text) { return absl::WebSafeBase64Escape(text); }

class AuthTest : public ::testing::Test {
 protected:
  std::unique_ptr<TokenVerifier> Hmac() {
    auto verifier = TokenVerifier::Create(kSecret, "");
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return *std::move(verifier);
  }
  std::unique_ptr<TokenVerifier> Public(const Pem& pem, std::string secret = "") {
    auto verifier = TokenVerifier::Create(std::move(secret), pem.public_key);
    EXPECT_TRUE(verifier.ok()) << verifier.status();
    return *std::move(verifier);
  }
  static void ExpectRefused(const absl::StatusOr<Identity>& identity, absl::string_view why) {
    ASSERT_FALSE(identity.ok());
    EXPECT_EQ(identity.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_NE(identity.status().message().find(why), absl::string_view::npos) << identity.status();
  }
};

TEST_F(AuthTest, GoodHs256TokenGivesIdentity) {
  auto identity = Hmac()->Verify(Mint(JWT_ALG_HS256, kSecret, Claims()), kNow);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->user_id, "alice");
  EXPECT_EQ(identity->info.fields().at("name").string_value(), "Alice");
  EXPECT_FALSE(identity->grants.all());
  EXPECT_EQ(identity->grants.subscribe_size(), 2);
  EXPECT_EQ(identity->expires, kNow + absl::Seconds(60));
}

TEST_F(AuthTest, BadSignatureIsRefused) {
  ExpectRefused(
      Hmac()->Verify(Mint(JWT_ALG_HS256, "another-secret-of-32-bytes-long!", Claims()), kNow),
      "bad signature");
}

TEST_F(AuthTest, TamperedClaimsAreRefused) {
  std::string token = Mint(JWT_ALG_HS256, kSecret, Claims());
  size_t first = token.find('.');
  size_t second = token.find('.', first + 1);
  std::string forged = Claims(R"(,"admin":true)");
  token.replace(first + 1, second - first - 1, B64(forged));
  ExpectRefused(Hmac()->Verify(token, kNow), "bad signature");
}

TEST_F(AuthTest, AlgNoneIsRefused) {
  std::string token = B64(R"({"alg":"none","typ":"JWT"})") + "." + B64(Claims()) + ".";
  ExpectRefused(Hmac()->Verify(token, kNow), "algorithm none");
}

TEST_F(AuthTest, HmacSignedWithPublicKeyTextIsRefused) {
  // HS/RS confusion: an attacker "signs" with the public key's PEM as the
  // HMAC secret, hoping the verifier uses the configured key for any alg.
  Pem pem = NewKeyPair(/*rsa=*/true);
  ExpectRefused(Public(pem)->Verify(Mint(JWT_ALG_HS256, pem.public_key, Claims()), kNow),
                "algorithm HS256");
}

TEST_F(AuthTest, RsaTokenNotAcceptedWithOnlyAnHmacSecret) {
  Pem pem = NewKeyPair(/*rsa=*/true);
  ExpectRefused(Hmac()->Verify(Mint(JWT_ALG_RS256, pem.private_key, Claims()), kNow),
                "algorithm RS256");
}

TEST_F(AuthTest, GoodRs256Token) {
  Pem pem = NewKeyPair(/*rsa=*/true);
  auto identity = Public(pem)->Verify(Mint(JWT_ALG_RS256, pem.private_key, Claims()), kNow);
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->user_id, "alice");
}

TEST_F(AuthTest, Rs256SignedByAnotherKeyIsRefused) {
  Pem pem = NewKeyPair(/*rsa=*/true);
  Pem other = NewKeyPair(/*rsa=*/true);
  ExpectRefused(Public(pem)->Verify(Mint(JWT_ALG_RS256, other.private_key, Claims()), kNow),
                "bad signature");
}

TEST_F(AuthTest, GoodEs256TokenAndBothKeys) {
  Pem pem = NewKeyPair(/*rsa=*/false);
  auto verifier = Public(pem, kSecret);
  EXPECT_TRUE(verifier->Verify(Mint(JWT_ALG_ES256, pem.private_key, Claims()), kNow).ok());
  EXPECT_TRUE(verifier->Verify(Mint(JWT_ALG_HS256, kSecret, Claims()), kNow).ok());
  // An EC key allows ES256 only.
  ExpectRefused(verifier->Verify(Mint(JWT_ALG_RS256, NewKeyPair(true).private_key, Claims()), kNow),
                "algorithm RS256");
}

TEST_F(AuthTest, ExpiredIsRefused) {
  auto verifier = Hmac();
  std::string token = Mint(JWT_ALG_HS256, kSecret, Claims());
  EXPECT_TRUE(verifier->Verify(token, kNow + absl::Seconds(59)).ok());
  ExpectRefused(verifier->Verify(token, kNow + absl::Seconds(60)), "expired");
}

TEST_F(AuthTest, MissingExpIsRefused) {
  ExpectRefused(Hmac()->Verify(Mint(JWT_ALG_HS256, kSecret, R"({"sub":"alice"})"), kNow),
                "exp is required");
}

TEST_F(AuthTest, NotYetValidIsRefused) {
  std::string claims = Claims(absl::StrCat(R"(,"nbf":)", absl::ToUnixSeconds(kNow) + 10));
  auto verifier = Hmac();
  std::string token = Mint(JWT_ALG_HS256, kSecret, claims);
  ExpectRefused(verifier->Verify(token, kNow), "not yet valid");
  EXPECT_TRUE(verifier->Verify(token, kNow + absl::Seconds(10)).ok());
}

TEST_F(AuthTest, MalformedTokensAreRefused) {
  auto verifier = Hmac();
  ExpectRefused(verifier->Verify("", kNow), "required");
  ExpectRefused(verifier->Verify("garbage", kNow), "not a JWT");
  ExpectRefused(verifier->Verify("!!!.???.###", kNow), "malformed header");
  ExpectRefused(verifier->Verify(B64("[1,2]") + ".e30.", kNow), "malformed header");
  ExpectRefused(verifier->Verify(B64(R"({"alg":7})") + ".e30.", kNow), "no alg");
  ExpectRefused(verifier->Verify(B64(R"({"alg":"HS256"})") + ".", kNow), "malformed");
  ExpectRefused(verifier->Verify(std::string(kMaxTokenBytes + 1, 'a'), kNow), "too long");
}

TEST_F(AuthTest, MistypedClaimsAreRefused) {
  auto verifier = Hmac();
  auto with = [&](absl::string_view claims) {
    return verifier->Verify(Mint(JWT_ALG_HS256, kSecret, std::string(claims)), kNow);
  };
  ExpectRefused(with(R"({"exp":"soon"})"), "exp is not a number");
  ExpectRefused(with(R"({"exp":1900000000,"sub":5})"), "sub is not a string");
  ExpectRefused(with(R"({"exp":1900000000,"info":"x"})"), "info is not a JSON object");
  ExpectRefused(with(R"({"exp":1900000000,"rooms":["a"]})"), "rooms is not an object");
  ExpectRefused(with(R"({"exp":1900000000,"rooms":{"publish":"a"}})"), "not a list");
  ExpectRefused(with(R"({"exp":1900000000,"rooms":{"publish":[1]}})"), "non-name");
}

TEST_F(AuthTest, NoRoomsClaimGrantsNothing) {
  auto identity = Hmac()->Verify(Mint(JWT_ALG_HS256, kSecret, R"({"exp":1900000000})"), kNow);
  ASSERT_TRUE(identity.ok());
  EXPECT_FALSE(Allowed(identity->grants, RoomOp::kSubscribe, "a"));
}

TEST_F(AuthTest, WrongRoomIsNotAllowed) {
  auto identity = Hmac()->Verify(Mint(JWT_ALG_HS256, kSecret, Claims()), kNow);
  ASSERT_TRUE(identity.ok());
  EXPECT_TRUE(Allowed(identity->grants, RoomOp::kSubscribe, "a"));
  EXPECT_FALSE(Allowed(identity->grants, RoomOp::kSubscribe, "b"));
  EXPECT_FALSE(Allowed(identity->grants, RoomOp::kSubscribe, "ab"));
  EXPECT_FALSE(Allowed(identity->grants, RoomOp::kPublish, "chat:x"));
}

TEST_F(AuthTest, PrefixGrantMatchesItsRoomsOnly) {
  v1::Grants grants;
  grants.add_subscribe("chat:*");
  EXPECT_TRUE(Allowed(grants, RoomOp::kSubscribe, "chat:lobby"));
  EXPECT_TRUE(Allowed(grants, RoomOp::kSubscribe, "chat:"));
  EXPECT_FALSE(Allowed(grants, RoomOp::kSubscribe, "chat"));
  EXPECT_FALSE(Allowed(grants, RoomOp::kSubscribe, "news:chat:x"));
  grants.add_history("*");
  EXPECT_TRUE(Allowed(grants, RoomOp::kHistory, "anything"));
}

TEST_F(AuthTest, PublishOnlyGrant) {
  v1::Grants grants;
  grants.add_publish("feed");
  EXPECT_TRUE(Allowed(grants, RoomOp::kPublish, "feed"));
  EXPECT_FALSE(Allowed(grants, RoomOp::kSubscribe, "feed"));
  EXPECT_FALSE(Allowed(grants, RoomOp::kPresence, "feed"));
  EXPECT_FALSE(Allowed(grants, RoomOp::kHistory, "feed"));
}

TEST_F(AuthTest, AllGrantAllowsEverything) {
  v1::Grants grants;
  grants.set_all(true);
  EXPECT_TRUE(Allowed(grants, RoomOp::kPublish, "x"));
}

TEST_F(AuthTest, CreateRefusesMissingOrUnusableKeys) {
  EXPECT_EQ(TokenVerifier::Create("", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TokenVerifier::Create("", "not a pem").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A private key is not a public key.
  EXPECT_FALSE(TokenVerifier::Create("", NewKeyPair(true).private_key).ok());
}

TEST_F(AuthTest, TokenFromQueryOrBearerHeader) {
  EXPECT_EQ(TokenOf("/ws?token=abc", ""), "abc");
  EXPECT_EQ(TokenOf("/sse?room=a&token=x.y.z", "Bearer other"), "x.y.z");
  EXPECT_EQ(TokenOf("/publish", "Bearer abc"), "abc");
  EXPECT_EQ(TokenOf("/publish", "bearer abc"), "abc");
  EXPECT_EQ(TokenOf("/publish", "Basic abc"), std::nullopt);
  EXPECT_EQ(TokenOf("/ws", ""), std::nullopt);
}

TEST_F(AuthTest, AuthenticateWithoutVerifierOrAnonymousAllowed) {
  auto none = Authenticate(nullptr, false, std::nullopt, kNow);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->grants.all());
  auto verifier = Hmac();
  EXPECT_EQ(Authenticate(verifier.get(), false, std::nullopt, kNow).status().code(),
            absl::StatusCode::kUnauthenticated);
  auto anonymous = Authenticate(verifier.get(), true, std::nullopt, kNow);
  ASSERT_TRUE(anonymous.ok());
  EXPECT_TRUE(anonymous->grants.all());
  EXPECT_EQ(anonymous->user_id, "");
  // A bad token is refused even where anonymous clients are allowed.
  EXPECT_FALSE(Authenticate(verifier.get(), true, std::string("x.y.z"), kNow).ok());
  auto alice = Authenticate(verifier.get(), true, Mint(JWT_ALG_HS256, kSecret, Claims()), kNow);
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->user_id, "alice");
  v1::ClientConnected connected;
  AnnounceIdentity(*alice, connected);
  EXPECT_EQ(connected.client().user_id(), "alice");
  EXPECT_EQ(connected.client().info().fields().at("name").string_value(), "Alice");
  EXPECT_TRUE(connected.has_grants());
  EXPECT_FALSE(connected.grants().all());
}

TEST_F(AuthTest, UnauthorizedBodyIsJson) {
  EXPECT_EQ(UnauthorizedBody("invalid token: \"x\""),
            R"({"error":{"code":16,"message":"invalid token: \"x\""}})");
}

}  // namespace
}  // namespace roomcast::edge
