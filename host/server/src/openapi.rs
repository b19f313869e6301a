//! `GET /v1/openapi.json`: the API described from the code — the routes' annotations in
//! `routes/` and the types they take and answer — so that it cannot drift from what is
//! served (`tests/server.rs` checks real answers against it).

use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cardrules",
        description = "The point-of-sale HTTP API of cardrules: decisions, holders and cards of \
            municipal benefit-card programs. With `serve --auth`, every route but `/healthz`, \
            `/readyz` and `/v1/openapi.json` needs `Authorization: Bearer <token>`; a token's \
            role (`terminal`, `registrar`, `admin`, `guardian`, `venue`), programs and actions (and a \
            guardian's cards) bound what it may do. \
            Every error answer is `{\"error\": \"…\"}`; an unknown route is a 404 and a known route \
            with another method a 405 (naming the methods it takes, also in `Allow`), both with \
            that body; so are the HTTP layer's answers to a request head it cannot read (400, \
            414, or 431 past the server's limit on heads)."
    ),
    paths(
        crate::routes::decisions::decide,
        crate::routes::programs::programs,
        crate::routes::publish::publish,
        crate::routes::cards::register,
        crate::routes::cards::update_holder,
        crate::routes::cards::erase,
        crate::routes::cards::restrict,
        crate::routes::cards::card,
        crate::routes::portal::allowances,
        crate::routes::portal::history,
        crate::routes::access_log::access_log,
        crate::routes::cards::export,
        crate::routes::venues::programs,
        crate::routes::venues::bundle,
        crate::routes::venues::journal,
        crate::routes::venues::base,
        crate::routes::venues::lease,
        crate::routes::venues::end_lease,
        crate::routes::venues::upload,
        crate::routes::venues::status,
        crate::routes::venues::venues,
        crate::routes::portal::why,
        crate::routes::programs::program,
        crate::routes::programs::coverage,
        crate::routes::caller::caller,
        crate::routes::operations::healthz,
        crate::routes::operations::readyz,
        crate::routes::operations::metrics_text,
        crate::routes::operations::openapi_json,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "decisions", description = "Asking a program for a decision"),
        (name = "cards", description = "Holders and their cards"),
        (name = "programs", description = "What is served"),
        (name = "venues", description = "A city host and its venue hosts: rollout, journals, status"),
        (name = "operations", description = "Liveness, readiness, metrics and this description"),
    )
)]
struct Api;

/// Declares the `bearer` security scheme the routes name.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The description, as JSON.
pub fn json() -> Result<String, serde_json::Error> {
    Api::openapi().to_pretty_json()
}

/// The methods each described path takes (`/v1/decisions` → `["POST"]`), paths as the
/// router writes them: a 405 names them from here, so that they cannot differ from what is
/// described.
pub(crate) fn methods(path: &str) -> &'static [&'static str] {
    static METHODS: std::sync::LazyLock<std::collections::BTreeMap<String, Vec<&'static str>>> =
        std::sync::LazyLock::new(|| {
            Api::openapi()
                .paths
                .paths
                .into_iter()
                .map(|(path, item)| {
                    let methods = [
                        ("GET", item.get.is_some()),
                        ("HEAD", item.head.is_some() || item.get.is_some()),
                        ("POST", item.post.is_some()),
                        ("PUT", item.put.is_some()),
                        ("PATCH", item.patch.is_some()),
                        ("DELETE", item.delete.is_some()),
                    ];
                    let methods = methods.into_iter().filter(|(_, has)| *has);
                    (path, methods.map(|(method, _)| method).collect())
                })
                .collect()
        });
    METHODS.get(path).map_or(&[], Vec::as_slice)
}
