//! `http-hello`: a `wasi:http/proxy` component for `wharf serve`.
//!
//! - `GET /anything` answers 200 with a greeting and the path;
//! - `/env/NAME` answers with the value of the environment variable NAME
//!   (the component also uses `wasi:cli`, as Rust's std does);
//! - `/trap` panics (the server must answer 500 and keep serving);
//! - `/slow` never returns (the server's timeout must stop it).

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wasip2::http::proxy::export!(HttpHello);

struct HttpHello;

impl wasip2::exports::http::incoming_handler::Guest for HttpHello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (status, body) = match path.as_str() {
            "/trap" => panic!("the guest was asked to trap"),
            "/slow" => loop {
                std::hint::spin_loop();
            },
            p if p.starts_with("/env/") => match std::env::var(&p[5..]) {
                Ok(v) => (200, format!("{v}\n")),
                Err(_) => (404, format!("no variable {}\n", &p[5..])),
            },
            p => (200, format!("Hello from a wharf HTTP component!\npath: {p}\n")),
        };
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain".to_vec()]);
        let resp = OutgoingResponse::new(headers);
        let _ = resp.set_status_code(status);
        let out_body = resp.body().expect("a fresh response has a body");
        ResponseOutparam::set(response_out, Ok(resp));
        let mut out = out_body.write().expect("the body has a stream");
        out.write_all(body.as_bytes()).expect("write the body");
        out.flush().expect("flush the body");
        drop(out);
        OutgoingBody::finish(out_body, None).expect("finish the body");
    }
}
