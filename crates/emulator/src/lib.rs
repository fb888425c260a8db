//! `x-emulator`: a local stand-in for X's side. (Built under issue 6.)
