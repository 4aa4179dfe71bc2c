"""A TCP relay on 127.0.0.1 that can go silent: what a client sees of a server whose packets are dropped
(it accepts a connection and never answers), without touching the host's firewall."""

from __future__ import annotations

import socket
import threading


class Relay:
    """A TCP relay on 127.0.0.1 to `upstream`. `silence()`: relayed connections are cut and new ones are
    accepted and never answered; `resume()`: new connections are relayed again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream, self.silent = upstream, False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.relayed: list[socket.socket] = []
        self.held: list[socket.socket] = []  # accepted while silent: kept open, never read
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.silent:
                self.held.append(client)
                continue
            server = socket.create_connection(self.upstream)
            self.relayed += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            s.close()

    def silence(self) -> None:
        self.silent = True
        for s in self.relayed:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def resume(self) -> None:
        self.silent = False
        for s in self.held:
            s.close()
        self.held.clear()

    def close(self) -> None:
        self.listener.close()
        self.silence()
        self.resume()
