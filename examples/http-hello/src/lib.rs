//! `http-hello`: a `wasi:http/proxy` component for `wharf serve`.
//!
//! - `GET /anything` answers 200 with a greeting and the path;
//! - `/env/NAME` answers with the value of the environment variable NAME
//!   (the component also uses `wasi:cli`, as Rust's std does);
//! - `/trap` panics (the server must answer 500 and keep serving);
//! - `/slow` never returns (the server's timeout must stop it);
//! - `/fetch/HOST:PORT/PATH` makes an outgoing `wasi:http` GET to
//!   `http://HOST:PORT/PATH` and answers with what came back (502 when the
//!   request was refused or failed).

use std::io::Write as _;

use std::io::Read as _;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

/// GET `http://{target}` (target: `HOST:PORT/PATH`).
fn fetch(target: &str) -> (u16, String) {
    let (authority, path) = match target.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (target, "/".to_owned()),
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(&path));
    let future = match outgoing_handler::handle(request, None) {
        Ok(f) => f,
        Err(e) => return (502, format!("refused: {e:?}\n")),
    };
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return (502, format!("failed: {e:?}\n")),
        _ => return (502, "no response\n".to_owned()),
    };
    let status = response.status();
    let body = response.consume().expect("a response body");
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().expect("a body stream");
        let _ = stream.read_to_end(&mut bytes);
    }
    drop(body);
    (200, format!("upstream {status}: {}", String::from_utf8_lossy(&bytes)))
}

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
            p if p.starts_with("/fetch/") => fetch(&p[7..]),
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
