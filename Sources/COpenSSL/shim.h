// The system OpenSSL, plus static inline wrappers for the macros Swift cannot import.
#ifndef WAAKVLAM_COPENSSL_SHIM_H
#define WAAKVLAM_COPENSSL_SHIM_H

#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/objects.h>

static inline long waakvlam_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long waakvlam_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_max_proto_version(ctx, version);
}
static inline long waakvlam_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline long waakvlam_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline long waakvlam_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return SSL_CTX_set1_groups_list(ctx, list);
}
static inline long waakvlam_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

/* --- Transport and development PKI (WaakvlamTransport) --- */

/* SSL_OP_* are built with a 64-bit shift macro that Swift cannot import. */
static inline uint64_t waakvlam_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t waakvlam_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t waakvlam_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
static inline uint64_t waakvlam_SSL_OP_NO_TICKET(void) { return SSL_OP_NO_TICKET; }
static inline uint64_t waakvlam_SSL_OP_IGNORE_UNEXPECTED_EOF(void) { return SSL_OP_IGNORE_UNEXPECTED_EOF; }
static inline long waakvlam_SSL_CTX_set_session_id_context_default(SSL_CTX *ctx) {
    static const unsigned char context[] = "waakvlam";
    return SSL_CTX_set_session_id_context(ctx, context, sizeof(context) - 1);
}
static inline long waakvlam_SSL_CTX_set_read_ahead(SSL_CTX *ctx, long yes) {
    return SSL_CTX_set_read_ahead(ctx, yes);
}
/* EVP_EC_gen expands to the variadic EVP_PKEY_Q_keygen. */
static inline EVP_PKEY *waakvlam_EVP_EC_gen(const char *curve) {
    return EVP_EC_gen(curve);
}
static inline unsigned long waakvlam_XN_FLAG_RFC2253(void) { return XN_FLAG_RFC2253; }
static inline void waakvlam_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}
static inline long waakvlam_BIO_get_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}

/* --- SHA-256 without the EVP layer (WaakvlamCrypto) ---
 * OpenSSL 3.0 frees and allocates the provider's digest state on every EVP_DigestInit_ex and
 * dispatches each call through the provider; for the journal's small records and the
 * pseudonyms' MACs that cost about as much as the hashing. The low-level functions (deprecated
 * in 3.0, still built) run the same assembly on a state the caller keeps, and a state can be
 * copied (HMAC's keyed midstates). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static inline void waakvlam_sha256_init(SHA256_CTX *state) { SHA256_Init(state); }
static inline void waakvlam_sha256_update(SHA256_CTX *state, const void *data, size_t count) {
    SHA256_Update(state, data, count);
}
/* Writes the 32-byte digest to `out` and wipes the buffered input. */
static inline void waakvlam_sha256_final(SHA256_CTX *state, unsigned char *out) { SHA256_Final(out, state); }
#pragma GCC diagnostic pop

#endif
