"""HSIC with its rows sharded over several devices (and processes): ``hsic(..., devices="all")``.

The single-device estimators of :mod:`hsens_jax.sensitivity.hsic` visit the square blocks
``(I, J)``, ``I <= J``, of every Gram matrix on one device.  Here the ``n`` rows are split in
``D`` contiguous shards, one per device of a 1-D mesh (axis ``"rows"``), and the blocks are
visited by a ring (the all-pairs pattern of distributed n-body codes):

* step 0: each device visits the blocks ``I <= J`` of its own shard;
* steps ``s = 1 .. floor(D / 2)``: each device receives, from its neighbour, the shard of
  device ``p + s`` (``lax.ppermute``) and visits every block ``(own I, visiting J)``.  For
  ``2 s < D`` the pair of shards ``{p, p + s}`` is visited by ``p`` alone (weight 2, as the
  off-diagonal blocks of one device): the column sums of the visiting shard travel with it
  and are sent home at the end; for ``2 s = D`` (even ``D``) both devices visit the pair,
  each for its own rows (weight 1).

Every unordered pair of rows is thus visited once, as on one device, and the work is split
evenly: ``N^2 / (2 D)`` kernel entries per device and pass.  Sums are combined with one
``psum``; per-row sums (the centring vectors) stay with the rows' owner.

Memory per device: the device's shard of the inputs and per-row vectors, ``O(n (d + g) / D)``,
the visiting shard (as much again), and one block, ``O(g b^2)`` -- never ``O(n^2)``, nor the
``O(n^2 g / b)`` per-block row sums that the single-device sweep stacks (it keeps row sums in
place instead).  The permutation test also keeps the output, the centring vector of the output
and one permutation replicated on every device (``O(n)``: permuting needs every row's output),
and ``B_c`` permuted outputs of its own and the visiting shard (``O(B_c n / D)``).

Results equal the single-device estimators' up to the order of float additions (the tests
compare them at float32 and float64 precision); the permutations are the same (the random
bits of :func:`hsens_jax.sensitivity.hsic._permutations` do not depend on the padding), so
permutation p-values are equal too, but for statistics within rounding of their threshold.

Every process of a group must call the estimator with the same arguments (the inputs are
compared by fingerprint first: :func:`hsens_jax.engine.distributed.check_agreement`); each
places only its own devices' shards.
"""

from __future__ import annotations

import functools
import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from hsens_jax.engine import distributed

H = importlib.import_module("hsens_jax.sensitivity.hsic")  # the module (the package exports the function)

AXIS = "rows"


def resolve_devices(devices):
    """See :func:`hsens_jax.engine.distributed.estimator_devices`."""
    return distributed.estimator_devices(devices)


# ----------------------------------------------------------------------------- the ring


def _sl(a, start, size):
    return lax.dynamic_slice_in_dim(a, start, size, a.ndim - 1)


def _add_at(buf, x, start):
    return lax.dynamic_update_slice_in_dim(buf, H._add(_sl(buf, start, x.shape[-1]), x), start, buf.ndim - 1)


def _tree_sl(tree, start, size):
    return jax.tree_util.tree_map(lambda a: _sl(a, start, size), tree)


def _visit(body, own, vis, pairs, acc, rbuf, cbuf, b, same):
    """Visit the block pairs ``pairs`` = (I, J, weight, columns flag) of (own rows, vis rows).

    Row sums go to ``rbuf`` at block I; column sums (weighted by the flag) to ``rbuf`` at
    block J when ``same`` (the shard with itself), else to ``cbuf``."""
    I, J, W, F = pairs

    def step(carry, args):
        acc, rbuf, cbuf = carry
        i, j, wt, flag = args
        r0, c0 = i * b, j * b
        sums, rows, cols = body(_tree_sl(own, r0, b), _tree_sl(vis, c0, b))
        acc = jax.tree_util.tree_map(lambda a, x: H._add(a, H._mul(wt, x)), acc, sums)
        if rows is not None:
            rbuf = _add_at(rbuf, rows, r0)
        if cols is not None and (same or cbuf is not None):
            cols = H._mul(cols, flag)
            if same:
                rbuf = _add_at(rbuf, cols, c0)
            else:
                cbuf = _add_at(cbuf, cols, c0)
        return (acc, rbuf, cbuf), None

    (acc, rbuf, cbuf), _ = lax.scan(step, (acc, rbuf, cbuf), pairs)
    return acc, rbuf, cbuf


def ring_sweep(body, own, init, *, D, S, b, m_rows=0, dt):
    """Sum ``body`` over every unordered pair of row blocks of the global ``(D S, D S)``
    matrix, its rows sharded as ``own`` (a pytree of arrays whose last axis is this device's
    ``S`` rows); call inside ``shard_map`` over :data:`AXIS`.

    ``body(row_block, col_block) -> (sums, rows, cols)``: ``sums`` a pytree (weight 1 on the
    diagonal blocks, 2 off it, as in ``hsic._sym_sweep``), ``rows``/``cols`` (m, b) per-row
    and per-column sums of the block (or None: then ``m_rows`` = 0).

    Returns ``(sums over all devices, this device's full row sums (m, S) or None)``.
    """
    nbl = S // b
    f = lambda a: jnp.asarray(a)  # noqa: E731
    iu, ju = np.triu_indices(nbl)
    diag_pairs = (f(iu.astype(np.int32)), f(ju.astype(np.int32)), f(np.where(iu == ju, 1.0, 2.0).astype(dt)),
                  f((iu != ju).astype(dt)))
    ia, ja = (a.ravel().astype(np.int32) for a in np.meshgrid(np.arange(nbl), np.arange(nbl), indexing="ij"))
    ones = np.ones(ia.size)
    with_rows = m_rows > 0
    zero_buf = lax.full((m_rows, S), 0, dt) if with_rows else None
    acc, rbuf, _ = _visit(body, own, own, diag_pairs, init, zero_buf, None, b, True)
    n_full = (D - 1) // 2  # steps whose pair of shards only this device visits (weight 2)
    shift_left = [(q, (q - 1) % D) for q in range(D)]
    if D > 1:
        full_pairs = (f(ia), f(ja), f((2.0 * ones).astype(dt)), f(ones.astype(dt)))
        vis, cbuf = own, zero_buf

        def full_step(_, carry):
            acc, rbuf, vis, cbuf = carry
            vis = lax.ppermute(vis, AXIS, shift_left)
            if with_rows:
                cbuf = lax.ppermute(cbuf, AXIS, shift_left)
            acc, rbuf, cbuf = _visit(body, own, vis, full_pairs, acc, rbuf, cbuf, b, False)
            return acc, rbuf, vis, cbuf

        if n_full:
            acc, rbuf, vis, cbuf = lax.fori_loop(0, n_full, full_step, (acc, rbuf, vis, cbuf))
            if with_rows:  # the visiting shard's column sums go home (to device p + n_full)
                rbuf = H._add(rbuf, lax.ppermute(cbuf, AXIS, [(q, (q + n_full) % D) for q in range(D)]))
        if D % 2 == 0:  # the opposite shard: both devices visit the pair, each for its own rows
            vis = lax.ppermute(vis, AXIS, shift_left)
            half_pairs = (f(ia), f(ja), f(ones.astype(dt)), f(np.zeros(ia.size, dt)))
            acc, rbuf, _ = _visit(body, own, vis, half_pairs, acc, rbuf, None, b, False)
    acc = jax.tree_util.tree_map(lambda a: lax.psum(a, AXIS), acc)
    return acc, rbuf


def _psum(x):
    return lax.psum(x, AXIS)


def _dotv(a, v):  # sum over this shard's rows, then over all devices
    return _psum(H._dot(a, v, ((a.ndim - 1,), (0,))))


# ----------------------------------------------------------------------------- estimators


def _block_means(x, ref, fn, b):
    """Row means of ``fn(x block, ref)`` (kernels against a column subsample), block by block."""
    S = x.shape[-1]
    out = lax.map(lambda r0: fn(_sl(x, r0, b), ref), jnp.arange(0, S, b, dtype=jnp.int32))  # (nbl, ..., b)
    return jnp.moveaxis(out, 0, -2).reshape(out.shape[1:-1] + (S,))


def _single_pass(own, rep, *, D, S, b, g, cat, has_groups, has_gscale, out_kind, want_gamma, dt):
    """``hsic._single_pass_v`` on sharded rows (unweighted V-statistic, R2, optional Gamma moments)."""
    G = rep["groups"] if has_groups else None
    gs = rep["gscale"] if has_gscale else None
    x, z, v, dl = own["x"], own["z"], own["v"], own["dl"]
    nf = rep["nf"]
    xsub, zsub = rep["xsub"], rep["zsub"]
    m = xsub.shape[1]
    gram = lambda xr, xc: H._input_gram(xr, xc, cat, G, gs)  # noqa: E731
    out = lambda zr, zc: H._output_gram(zr.T, zc.T, out_kind)  # noqa: E731 - rows last -> (t, k)
    rk = _block_means(x, xsub, lambda xb, ref: H._div(H._rsum(gram(xb, ref), (2,)), float(m)), b)  # (g, S)
    rk_bar = H._div(_dotv(rk, v), nf)

    def vv(r, c):
        return H._mul(r["v"][:, None], c["v"][None, :])

    if want_gamma:
        def pre(r, c):
            L = H._mul(out(r["z"], c["z"]), vv(r, c))
            return (), H._rsum(L, (1,))[None], H._rsum(L, (0,))[None]

        _, lrow = ring_sweep(pre, {"z": z, "v": v}, (), D=D, S=S, b=b, m_rows=1, dt=dt)
        rl = H._div(lrow[0], nf)
    else:
        rl = _block_means(z, zsub, lambda zb, ref: H._div(H._rsum(out(zb, ref), (1,)), float(m)), b)
    rl_bar = H._div(_dotv(rl, v), nf)

    def lc_block(r, c):
        Lc = H._add(H._sub(H._sub(out(r["z"], c["z"]), r["rl"][:, None]), c["rl"][None, :]), rl_bar)
        return H._mul(Lc, vv(r, c))

    gbb = (g, b, b)

    def main(r, c):
        K = gram(r["x"], c["x"])
        shift = H._sub(H._add(r["rk"][:, :, None], c["rk"][:, None, :]), H._bc(rk_bar, gbb, (0,)))
        Kt = H._mul(H._sub(K, shift), H._bc(vv(r, c), gbb, (1, 2)))
        Lc = lc_block(r, c)
        Lb = H._bc(Lc, gbb, (1, 2))
        sums = {"sxx": H._rsum(H._mul(Kt, Kt), (1, 2)), "syy": H._rsum(H._mul(Lc, Lc), (0, 1))}
        rows, cols = [H._rsum(Kt, (2,))], [H._rsum(Kt, (1,))]
        if not want_gamma:
            sums["sxy"] = H._rsum(H._mul(Kt, Lb), (1, 2))
            rows.append(H._rsum(Lc, (1,))[None])
            cols.append(H._rsum(Lc, (0,))[None])
        else:
            M = H._mul(Kt, Lb)
            sums["sxy"] = H._rsum(M, (1, 2))
            sums["s1"] = H._rsum(H._mul(M, M), (1, 2))
            KQ = H._mul(M, Lb)
            Q = H._mul(Lc, Lc)
            rows += [H._rsum(KQ, (2,)), H._rsum(Q, (1,))[None]]
            cols += [H._rsum(KQ, (1,)), H._rsum(Q, (0,))[None]]
        return sums, lax.concatenate(rows, 0), lax.concatenate(cols, 0)

    zg = lax.full((g,), 0, dt)
    init = {"sxy": zg, "sxx": zg, "syy": lax.full((), 0, dt)}
    if want_gamma:
        init["s1"] = zg
    pack = {"x": x, "z": z, "rk": rk, "rl": rl, "v": v}
    acc, vec = ring_sweep(main, pack, init, D=D, S=S, b=b, m_rows=(2 * g + 1) if want_gamma else g + 1, dt=dt)
    nf2 = H._mul(nf, nf)
    a = vec[:g]
    sa = _psum(H._rsum(a, (1,)))
    sxx = H._add(H._sub(acc["sxx"], H._mul(H._div(2.0, nf), _psum(H._rsum(H._mul(a, a), (1,))))),
                 H._div(H._mul(sa, sa), nf2))
    if want_gamma:
        sxy, syy, cb = acc["sxy"], acc["syy"], rl
    else:
        bl = vec[g]
        sbl = _psum(H._rsum(bl, (0,)))
        sxy = H._add(H._sub(acc["sxy"], H._mul(H._div(2.0, nf), _dotv(a, bl))), H._div(H._mul(sa, sbl), nf2))
        syy = H._add(H._sub(acc["syy"], H._mul(H._div(2.0, nf), _psum(H._rsum(H._mul(bl, bl), (0,))))),
                     H._div(H._mul(sbl, sbl), nf2))
        cb = H._add(H._div(bl, nf), rl)
    hxy, hxx, hyy = H._div(sxy, nf2), H._div(sxx, nf2), H._div(syy, nf2)
    ca = H._add(H._div(a, nf), rk)
    res = {"hsic": hxy, "hxx": hxx, "hyy": hyy, "r2": H._mul(hxy, lax.rsqrt(H._mul(hxx, hyy))),
           "ca": ca, "ga": H._div(_dotv(ca, v), nf), "cb": cb, "gb": H._div(_dotv(cb, v), nf), "sxy": sxy}
    if want_gamma:
        kq = vec[g:2 * g]
        q = vec[2 * g]
        u = H._sub(H._div(a, nf), H._div(sa, H._mul(2.0, nf2))[:, None])

        def post(r, c):
            Lc = lc_block(r, c)
            t = H._dot(r["u"], H._mul(Lc, Lc), ((1,), (0,)))  # (g, b)
            return H._rsum(H._mul(t, c["u"]), (1,)), None, None

        uqu, _ = ring_sweep(post, {"z": z, "rl": rl, "v": v, "u": u}, zg, D=D, S=S, b=b, dt=dt)
        s_all = H._add(H._add(H._sub(acc["s1"], H._mul(4.0, _psum(H._rsum(H._mul(u, kq), (1,))))),
                              H._mul(2.0, _dotv(H._mul(u, u), q))), H._mul(2.0, uqu))
        lc_diag = H._add(H._sub(dl, H._mul(2.0, rl)), rl_bar)
        kc_diag = H._sub(H._add(H._sub(lax.full_like(rk, 1), H._mul(2.0, rk)), rk_bar[:, None]), H._mul(2.0, u))
        s_b = H._sub(s_all, _dotv(H._mul(kc_diag, kc_diag), H._mul(H._mul(lc_diag, lc_diag), v)))
        sum_k = H._add(sa, H._mul(nf2, rk_bar))
        res.update(H._gamma_params(sum_k, H._mul(nf, _dotv(rl, v)), _dotv(dl, v), s_b, hxy, nf, "V"))
    return res


def _two_pass(own, rep, *, D, S, b, g, cat, has_groups, has_gscale, out_kind, want_gamma, estimator, dt):
    """``hsic._two_pass`` on sharded rows: U-statistic and weighted (conditional) V-statistic."""
    G = rep["groups"] if has_groups else None
    gs = rep["gscale"] if has_gscale else None
    x, z, v, dl, w = own["x"], own["z"], own["v"], own["dl"], own["w"]
    nf = rep["nf"]
    gram = lambda xr, xc: H._input_gram(xr, xc, cat, G, gs)  # noqa: E731
    out = lambda zr, zc: H._output_gram(zr.T, zc.T, out_kind)  # noqa: E731

    def pass1(r, c):
        K, L = gram(r["x"], c["x"]), out(r["z"], c["z"])
        rows = jnp.concatenate([K @ c["w"], (L @ c["w"])[None]])
        cols = jnp.concatenate([jnp.einsum("i,gij->gj", r["w"], K), (r["w"] @ L)[None]])
        return (), rows, cols

    _, vec = ring_sweep(pass1, {"x": x, "z": z, "w": w}, (), D=D, S=S, b=b, m_rows=g + 1, dt=dt)
    a, bv = vec[:g] * v, vec[g] * v
    if estimator == "V":
        ca = a / nf
        ga = _psum(ca @ w) / nf
        cb = bv / nf
        gb = _psum(cb @ w) / nf
        norm = nf * nf
    else:
        at = a - v
        bt = bv - dl * v
        ca = at / (nf - 2.0)
        ga = _psum(jnp.sum(at, axis=1)) / ((nf - 1.0) * (nf - 2.0))
        cb = bt / (nf - 2.0)
        gb = _psum(jnp.sum(bt)) / ((nf - 1.0) * (nf - 2.0))
        norm = nf * (nf - 3.0)
    sum_a, sum_b = _psum(jnp.sum(a, axis=1)), _psum(jnp.sum(bv))
    if want_gamma:
        va, vga = a / nf, sum_a / (nf * nf)
        vb, vgb = bv / nf, sum_b / (nf * nf)

    def pass2(r, c):
        K, L = gram(r["x"], c["x"]), out(r["z"], c["z"])
        Kc = K - r["ca"][:, :, None] - c["ca"][:, None, :] + ga[:, None, None]
        Lc = L - r["cb"][:, None] - c["cb"][None, :] + gb
        vv = r["v"][:, None] * c["v"][None, :]
        off = vv * (r["i"][:, None] != c["i"][None, :]).astype(dt)
        ww = r["w"][:, None] * c["w"][None, :] if estimator == "V" else off
        M = ww * Lc
        sums = {"sxy": jnp.sum(Kc * M, axis=(1, 2)), "sxx": jnp.sum(Kc * Kc * ww, axis=(1, 2)),
                "syy": jnp.sum(M * Lc)}
        if want_gamma:
            Bx = K - r["va"][:, :, None] - c["va"][:, None, :] + vga[:, None, None]
            By = L - r["vb"][:, None] - c["vb"][None, :] + vgb
            Pm = Bx * (By * off)
            sums["sb"] = jnp.sum(Pm * Bx * By, axis=(1, 2))
        return sums, None, None

    pack = {"x": x, "z": z, "v": v, "w": w, "i": own["i"], "ca": ca, "cb": cb}
    init = {"sxy": jnp.zeros(g, dt), "sxx": jnp.zeros(g, dt), "syy": jnp.zeros((), dt)}
    if want_gamma:
        pack.update(va=va, vb=vb)
        init["sb"] = jnp.zeros(g, dt)
    sums, _ = ring_sweep(pass2, pack, init, D=D, S=S, b=b, dt=dt)
    hxy, hxx, hyy = sums["sxy"] / norm, sums["sxx"] / norm, sums["syy"] / norm
    res = {"hsic": hxy, "hxx": hxx, "hyy": hyy, "r2": hxy / jnp.sqrt(hxx * hyy),
           "ca": ca, "ga": ga, "cb": cb, "gb": gb, "sxy": sums["sxy"]}
    if want_gamma:
        res.update(H._gamma_params(sum_a, sum_b, _dotv(dl, v), sums["sb"], hxy, nf, estimator))
    return res


def _perm(own, rep, *, D, S, b, g, cat, has_groups, has_gscale, out_kind, estimator, n_perm, chunk, weighted,
          dt):
    """``hsic._perm_core`` on sharded rows: (n_perm, g) permuted statistics, the permutations
    those of ``hsic._permutations`` (each one drawn whole on every device, its rows kept)."""
    G = rep["groups"] if has_groups else None
    gs = rep["gscale"] if has_gscale else None
    x, ca, v = own["x"], own["ca"], own["v"]
    ga, gb = rep["ga"], rep["gb"]
    z_all, cb_all, w_all, v_all = rep["z_all"], rep["cb_all"], rep["w_all"], rep["v_all"]  # (N_D, ...) replicated
    n_chunks = -(-n_perm // chunk)
    keys = jax.random.split(rep["key"], n_perm)
    keys = jnp.concatenate([keys, jnp.broadcast_to(keys[-1:], (n_chunks * chunk - n_perm,))])
    start = lax.axis_index(AXIS) * S
    top = jnp.uint32(0xFFFFFFFF)
    iota = jnp.arange(v_all.shape[0], dtype=jnp.int32)
    N = v_all.shape[0]

    def permuted_rows(k):  # as hsic._permutations, then this device's rows of the permuted output
        k1, k2 = jax.random.split(k)
        b1 = jnp.where(v_all > 0, jnp.minimum(jax.random.bits(k1, (N,), jnp.uint32), top - 1), top)
        b2 = jnp.where(v_all > 0, jax.random.bits(k2, (N,), jnp.uint32), top)
        perm = lax.dynamic_slice_in_dim(lax.sort((b1, b2, iota), num_keys=2, is_stable=True)[2], start, S)
        return z_all[perm].T, cb_all[perm] - 0.5 * gb, w_all[perm]  # (k, S), (S,), (S,)

    gram = lambda xr, xc: H._input_gram(xr, xc, cat, G, gs)  # noqa: E731
    vdiag = estimator == "V"

    def one_chunk(chunk_keys):
        zp, cp, wp = lax.map(permuted_rows, chunk_keys)  # (chunk, k, S), (chunk, S), (chunk, S)

        def body(r, c):
            K = gram(r["x"], c["x"])
            mask = r["v"][:, None] * c["v"][None, :]
            if not vdiag:
                mask = mask * (r["i"][:, None] != c["i"][None, :]).astype(dt)
            Kc = (K - r["ca"][:, :, None] - c["ca"][:, None, :] + ga[:, None, None]) * mask
            Lt = H._output_gram(jnp.swapaxes(r["zp"], 1, 2), jnp.swapaxes(c["zp"], 1, 2), out_kind)
            M = Lt - r["cp"][:, :, None] - c["cp"][:, None, :]
            if weighted:
                M = M * (r["wp"][:, :, None] * c["wp"][:, None, :])
            return M.reshape(M.shape[0], -1) @ Kc.reshape(g, -1).T, None, None

        pack = {"x": x, "ca": ca, "v": v, "i": own["i"], "zp": zp, "cp": cp, "wp": wp}
        acc, _ = ring_sweep(body, pack, jnp.zeros((chunk, g), dt), D=D, S=S, b=b, dt=dt)
        return acc

    stats = lax.map(one_chunk, keys.reshape((n_chunks, chunk) + keys.shape[1:]))
    return stats.reshape(n_chunks * chunk, g)[:n_perm]


def _target_index(own, rep, *, D, S, b, g, cat, has_groups, dt):
    """``hsic._target_index_at`` on sharded rows (the objective of ``bandwidth="max"``)."""
    G = rep["groups"] if has_groups else None

    def body(r, c):
        K = H._input_gram(r["x"], c["x"], cat, G, rep["inv_theta2"])
        return (K @ c["zc"]) @ r["zc"], None, None

    acc, _ = ring_sweep(body, {"x": own["x"], "zc": own["zc"]}, jnp.zeros(g, dt), D=D, S=S, b=b, dt=dt)
    return acc


# ----------------------------------------------------------------------------- programs


def _spec(name, ndim):
    return P(*([None] * (ndim - 1) + [AXIS]))


@functools.lru_cache(maxsize=64)
def _program(kind: str, mesh: Mesh, own_ndims: tuple, rep_names: tuple, out_rows: tuple, statics: tuple):
    """A jitted ``shard_map`` of estimator ``kind`` over ``mesh`` (cached per shape family)."""
    fn = {"single": _single_pass, "two": _two_pass, "perm": _perm, "target": _target_index}[kind]
    kw = dict(statics)
    own_specs = {name: _spec(name, nd) for name, nd in own_ndims}
    rep_specs = {name: P() for name in rep_names}

    def inner(own, rep):
        res = fn(own, rep, **kw)
        return res

    if kind in ("perm", "target"):
        out_specs = P()
    else:
        out_specs = {name: (P(None, AXIS) if name in out_rows else P()) for name in _core_outputs(kw)}

    def outer(own, rep):
        res = inner(own, rep)
        if isinstance(res, dict):
            # the output's centring vector is needed whole by the permutation test
            res = dict(res, cb=lax.all_gather(res["cb"], AXIS, tiled=True))
        return res

    mapped = jax.shard_map(outer, mesh=mesh, in_specs=(own_specs, rep_specs), out_specs=out_specs,
                           check_vma=False)
    return jax.jit(mapped)


def _core_outputs(kw):
    names = ["hsic", "hxx", "hyy", "r2", "ca", "ga", "cb", "gb", "sxy"]
    if kw.get("want_gamma"):
        names += ["gamma_shape", "gamma_scale", "gamma_x", "gamma_mean", "gamma_var"]
    return names


def _call(kind, mesh, own, rep, out_rows=(), **statics):
    own_ndims = tuple(sorted((name, a.ndim) for name, a in own.items()))
    fn = _program(kind, mesh, own_ndims, tuple(sorted(rep)), tuple(out_rows), tuple(sorted(statics.items())))
    with distributed.collective(f"computing HSIC ({kind})"):
        return fn(own, rep)


# ----------------------------------------------------------------------------- entry point


def _local(tree):
    """Replicated results as arrays of this process's first device."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a.addressable_data(0))), tree)


def run(prep, groups, kernel_bandwidth, *, devices, estimator, pvalue, n_permutations, key, tile_size,
        pvalue_convention, perm_chunk, bucket):
    """The sharded counterpart of ``hsic._run``: same arguments and results (``devices``: from
    :func:`resolve_devices`)."""
    from hsens_jax.sensitivity.buckets import bucket_size
    from hsens_jax.sensitivity.kernels import pooled_median_bandwidth

    n, d = prep.X.shape
    has_groups = groups is not None
    g = groups.shape[0] if has_groups else d
    D = len(devices)
    N = bucket_size(n) if bucket else n
    weighted = prep.goal == "conditional"
    single = estimator == "V" and not weighted
    cat_s = prep.cat if any(prep.cat) else None
    chunk = min(n_permutations, H.PERM_CHUNK) if perm_chunk is None else int(perm_chunk)
    per_device = -(-N // D)
    if tile_size is not None:
        target = int(tile_size)
    elif pvalue == "permutation":
        target = math.isqrt(H.PERM_BLOCK_ELEMENTS // chunk)
    elif single:
        target = math.isqrt((H.GAMMA_TILE_ELEMENTS if pvalue == "gamma" else H.SINGLE_PASS_TILE_ELEMENTS) // g)
    else:
        target = math.isqrt(H.AUTO_TILE_ELEMENTS // g)
    b = int(min(per_device, max(8 if tile_size is not None else 32, target)))
    S = -(-per_device // b) * b
    ND = D * S
    dt = prep.X.dtype
    if distributed.is_multiprocess():
        distributed.check_agreement("HSIC inputs", {
            "X": prep.X, "Z": prep.Z, "w": prep.w, "theta": prep.theta, "theta_z": prep.theta_z,
            "groups": groups, "options": [estimator, pvalue, n_permutations, tile_size, pvalue_convention,
                                          perm_chunk, bucket, str(kernel_bandwidth), list(prep.cat), prep.out_kind,
                                          prep.goal],
            "key": None if key is None else np.asarray(jax.random.key_data(key) if jnp.issubdtype(
                jnp.asarray(key).dtype, jax.dtypes.prng_key) else key)})
    mesh = Mesh(np.array(devices), (AXIS,))
    rows = lambda nd: NamedSharding(mesh, P(*([None] * (nd - 1) + [AXIS])))  # noqa: E731
    replicated = NamedSharding(mesh, P())
    put_rows = lambda a: distributed.put(np.asarray(a), rows(np.ndim(a)))  # noqa: E731
    put_rep = lambda a: distributed.put(np.asarray(a), replicated)  # noqa: E731

    theta = prep.theta
    gscale = None
    if kernel_bandwidth is not None and has_groups:
        if kernel_bandwidth == "max":
            kb = _max_bandwidths(prep, ND, groups, mesh, D, S, b, put_rows, put_rep)
        else:
            kb = np.array([pooled_median_bandwidth(prep.X[:, np.flatnonzero(row)]) for row in groups])
            kb = H._check_bandwidth_values(np.asarray(kb, dt), "bandwidth")
        theta = np.ones(d, dt)
        gscale = (1.0 / kb.astype(np.float64) ** 2).astype(dt)
    elif kernel_bandwidth == "max":
        theta = _max_bandwidths(prep, ND, None, mesh, D, S, b, put_rows, put_rep)
        kb = theta
    else:
        kb = None
    Xt, G, gs, Z, w, valid = H._padded(prep, ND, groups, gscale)
    Xs = Xt / theta[:, None].astype(dt)
    Zs = Z if prep.out_kind == "linear" else Z / prep.theta_z.astype(dt)
    diag_l = (np.sum(Z * Z, axis=1) if prep.out_kind == "linear" else np.ones(ND)).astype(dt)
    m = min(N, H._CENTRE_SAMPLE)
    sub = np.floor((np.arange(m) + 0.5) * (n / m)).astype(np.int64)
    own = {"x": put_rows(Xs), "z": put_rows(np.ascontiguousarray(Zs.T)), "v": put_rows(valid),
           "dl": put_rows(diag_l), "w": put_rows(w), "i": put_rows(np.arange(ND, dtype=np.int32))}
    rep = {"nf": put_rep(np.asarray(n, dt)), "groups": put_rep(G), "gscale": put_rep(gs)}
    statics = dict(D=D, S=S, b=b, g=g, cat=cat_s, has_groups=has_groups, has_gscale=gscale is not None,
                   out_kind=prep.out_kind, dt=np.dtype(dt))
    with jax.default_matmul_precision("highest"), H._no_gc_pauses():
        if single:
            rep_s = dict(rep, xsub=put_rep(Xs[:, sub]), zsub=put_rep(np.ascontiguousarray(Zs[sub].T)))
            own_s = {k: own[k] for k in ("x", "z", "v", "dl")}
            res = _call("single", mesh, own_s, rep_s, out_rows=("ca",), want_gamma=pvalue == "gamma", **statics)
        else:
            res = _call("two", mesh, own, rep, out_rows=("ca",), want_gamma=pvalue == "gamma",
                        estimator=estimator, **statics)
        pv = np.full((g,), np.nan, dt)
        if pvalue == "gamma":
            pv = H._gamma_sf(res, dt)
        elif pvalue == "permutation":
            if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
                k = key
            else:
                k = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
            rep_p = dict(rep, ga=res["ga"], gb=res["gb"], key=distributed.put(k, replicated), cb_all=res["cb"],
                         z_all=put_rep(Zs), w_all=put_rep(w), v_all=put_rep(valid))
            own_p = {"x": own["x"], "ca": res["ca"], "v": own["v"], "i": own["i"]}
            stats = _call("perm", mesh, own_p, rep_p, estimator=estimator, n_perm=int(n_permutations), chunk=chunk,
                          weighted=weighted, **statics)
            pv = H._pvalues_from_perm(np.asarray(stats.addressable_data(0)), np.asarray(res["sxy"].addressable_data(0)),
                                      pvalue_convention).astype(dt)
    res = _local({name: res[name] for name in res if name != "ca"})
    return res, pv, kb


def _max_bandwidths(prep, ND, groups, mesh, D, S, b, put_rows, put_rep):
    """``bandwidth="max"`` with the objective evaluated on the sharded rows."""
    from hsens_jax.sensitivity._brent import maximize_bounded

    n = prep.X.shape[0]
    Xt, G, _, Z, _, valid = H._padded(prep, ND, groups)
    z = Z[:, 0].astype(np.float64) * valid
    dt = prep.X.dtype
    zc = ((z - np.sum(z) / n) * valid).astype(dt)
    cat = prep.cat if any(prep.cat) else None
    g = G.shape[0] if groups is not None else Xt.shape[0]
    own = {"x": put_rows(Xt), "zc": put_rows(zc)}
    groups_rep = put_rep(G)

    def f(theta):
        rep = {"groups": groups_rep, "inv_theta2": put_rep(np.asarray(1.0 / theta ** 2, dt))}
        val = _call("target", mesh, own, rep, D=D, S=S, b=b, g=g, cat=cat, has_groups=groups is not None,
                    dt=np.dtype(dt))
        return np.asarray(val.addressable_data(0), np.float64) / n ** 2

    lo, hi = H.MAX_BANDWIDTH_BOUNDS
    theta, _, _ = maximize_bounded(f, lo, hi, g, xatol=H.MAX_BANDWIDTH_XATOL)
    return theta.astype(dt)
