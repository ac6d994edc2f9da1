//! The arenalab program. (SKELETON)
fn main() {
    println!("arenalab: not yet");
}
