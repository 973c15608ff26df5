//! Serves stateright's web explorer for the protocol model on
//! http://127.0.0.1:3000 (loopback only): step through runs by hand, or let
//! it search. `cargo run -p kafkv-model --release --example explore [keys ops]`.

use kafkv_model::{Config, RmwModel};
use stateright::Model;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u8>().expect("keys and ops are small numbers"));
    let keys = args.next().unwrap_or(1);
    let ops = args.next().unwrap_or(2);
    let model = RmwModel::new(Config::protocol(keys, ops));
    println!("exploring {keys} key(s), {ops} operation(s) on http://127.0.0.1:3000");
    model.checker().serve("127.0.0.1:3000");
}
