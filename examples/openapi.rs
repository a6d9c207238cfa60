//! Prints the OpenAPI 3.1 description: `cargo run --example openapi > openapi.json`.

fn main() {
    let doc = promo_gateway::http::openapi::document();
    println!("{}", doc.to_pretty_json().expect("the description serializes"));
}
