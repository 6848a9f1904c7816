//! The demo's v1 and v2 side by side: one row of the same tables in two shapes.

use serde_json::json;

use crate::harness::{demo_database, Portico};

#[tokio::test]
async fn v1_and_v2_serve_the_same_rows_in_their_own_shapes() {
    let (dir, db) = demo_database();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
        .unwrap()
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    let db_path = db.display().to_string();
    let config = portico::config::parse("demo.toml", &text, &|name| {
        (name == "DEMO_DB").then(|| db_path.clone())
    })
    .unwrap();
    let mint = |subject: &str, scopes: &[&str], claims: serde_json::Value| {
        portico::auth::token::mint(
            config.auth.as_ref().unwrap(),
            &portico::auth::token::TokenRequest {
                subject: subject.into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                claims: claims.as_object().cloned().unwrap_or_default(),
                ttl: std::time::Duration::from_secs(600),
            },
        )
        .unwrap()
    };
    let staff = mint(
        "clerk",
        &[
            "jobs:read",
            "jobs:read:all",
            "jobs:read:amounts",
            "customers:read",
            "customers:read:all",
        ],
        json!({}),
    );
    let portal = mint("portal", &["jobs:read"], json!({"customer_id": "C00002"}));
    let services =
        portico::app::build(&config, &dir.path().join("demo.toml").display().to_string()).unwrap();
    let app = Portico::start(services, &config).await;

    for id in ["J000001", "J000042", "J009999"] {
        let v1 = app
            .get_as(&format!("/v1/jobs/{id}"), Some(&staff))
            .await
            .body;
        let v2 = app
            .get_as(&format!("/v2/jobs/{id}"), Some(&staff))
            .await
            .body;
        assert_eq!(v2["id"], v1["id"]);
        assert_eq!(v2["order_date"], v1["ordered_on"], "renamed");
        assert!(v2.get("ordered_on").is_none() && v1.get("order_date").is_none());
        let expected_quote = match &v1["quote_amount"] {
            serde_json::Value::Null => json!(null),
            amount => json!({"value": amount, "currency": "USD"}),
        };
        assert_eq!(v2["quote"], expected_quote, "an amount became an object");
        let customer = app
            .get_as(
                &format!("/v1/customers/{}", v1["customer_id"].as_str().unwrap()),
                Some(&staff),
            )
            .await
            .body;
        assert_eq!(
            v2["customer_name"], customer["name"],
            "the customer's name is embedded"
        );
    }
    // Filters and sort on the money field compare the amount.
    let page = app
        .get_as(
            "/v2/jobs?quote[gte]=5000&sort=-quote&limit=20",
            Some(&staff),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let values: Vec<f64> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["quote"]["value"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!values.is_empty() && values.iter().all(|v| *v >= 5000.0));
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");

    // The portal policy holds in v2 too, and the quote is masked.
    let rows = app.all_pages_as("/v2/jobs?limit=100", Some(&portal)).await;
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row["customer_id"], "C00002");
        assert!(row.get("quote").is_none());
    }
}
