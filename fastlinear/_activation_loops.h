/* The activations of one type, included by _activations.h once per type with
 * FL_T (the type), FL_BITS (an unsigned integer of its size), FL_EXP_OF,
 * FL_ERF_OF, FL_TANH_OF (its functions) and FL_NAME (which appends the type's name),
 * and undefines them at its end. */

/* f(z). */
static inline FL_T FL_NAME(fl_f)(int act, FL_T z)
{
    const FL_T one = 1, half = (FL_T)0.5;
    if (act == FL_RELU)
        return z < 0 ? 0 : z; /* NaN stays NaN */
    if (act == FL_TANH)
        return FL_TANH_OF(z);
    if (act == FL_SIGMOID)
        return one / (one + FL_EXP_OF(-z));
    if (act == FL_GELU)
        return z * half * (one + FL_ERF_OF(z * (FL_T)FL_SQRT1_2));
    FL_T inner = (FL_T)FL_SQRT_2_PI * (z + (FL_T)FL_KAPPA * z * z * z);
    return half * z * (one + FL_TANH_OF(inner));
}

/* f'(z), from s = f(z) for tanh and sigmoid, s = z for the gelus. */
static inline FL_T FL_NAME(fl_df)(int act, FL_T s)
{
    const FL_T one = 1, half = (FL_T)0.5;
    if (act == FL_TANH)
        return one - s * s;
    if (act == FL_SIGMOID)
        return s * (one - s);
    if (act == FL_GELU)
        return (half * (one + FL_ERF_OF(s * (FL_T)FL_SQRT1_2))
                + s * FL_EXP_OF(-half * s * s) * (FL_T)FL_INV_SQRT_2PI);
    FL_T inner = (FL_T)FL_SQRT_2_PI * (s + (FL_T)FL_KAPPA * s * s * s);
    FL_T t = FL_TANH_OF(inner);
    return (half * (one + t)
            + half * s * (one - t * t) * (FL_T)FL_SQRT_2_PI * (one + 3 * (FL_T)FL_KAPPA * s * s));
}

/* g f'(.), from s as fl_df takes it, and for relu from s = y. */
static inline FL_T FL_NAME(fl_grad)(int act, FL_T g, FL_T s)
{
    if (act == FL_RELU)
        return s <= 0 ? 0 : g; /* a select, as PyTorch's threshold_backward: 0 even for an infinite g */
    return g * FL_NAME(fl_df)(act, s);
}

/* o = g where s > 0 (or s >= 0 if at_zero) or s is NaN, else 0: relu's select.
 * The bits of g go through a mask, without a branch per element (the signs are
 * random, and a mispredicted branch costs more than the element), and an
 * infinite or NaN g still gives 0 where it is not kept, as PyTorch's does. */
static inline void FL_NAME(fl_keep)(const FL_T* g, const FL_T* s, FL_T* o, ptrdiff_t n,
                                    int at_zero)
{
    ptrdiff_t j;
    if (at_zero) {
        for (j = 0; j < n; j++)
            ((FL_BITS*)o)[j] = ((const FL_BITS*)g)[j] & ((FL_BITS)0 - (FL_BITS)!(s[j] < 0));
    } else {
        for (j = 0; j < n; j++)
            ((FL_BITS*)o)[j] = ((const FL_BITS*)g)[j] & ((FL_BITS)0 - (FL_BITS)!(s[j] <= 0));
    }
}

#ifndef FL_SMOOTH_CASES
/* The switch cases of the activations other than relu, each running LOOP(its
 * code): a loop per activation, so that each inlines f for a constant and
 * vectorises. */
#define FL_SMOOTH_CASES(LOOP) \
    case FL_TANH: LOOP(FL_TANH); break; \
    case FL_SIGMOID: LOOP(FL_SIGMOID); break; \
    case FL_GELU: LOOP(FL_GELU); break; \
    case FL_GELU_TANH: LOOP(FL_GELU_TANH); break;
#endif

/* r = f(r) for n contiguous elements. */
FL_CLONES static void FL_NAME(fl_map)(int act, FL_T* r, ptrdiff_t n)
{
    ptrdiff_t j;
#define FL_MAP(ACT) for (j = 0; j < n; j++) r[j] = FL_NAME(fl_f)(ACT, r[j])
    switch (act) {
    case FL_RELU:
        FL_NAME(fl_keep)(r, r, r, n, 1);
        break;
    FL_SMOOTH_CASES(FL_MAP)
    }
#undef FL_MAP
}

/* o = g f'(.) for n contiguous elements (o may be g): a loop per activation. */
FL_CLONES static void FL_NAME(fl_grad_map)(int act, const FL_T* g, const FL_T* s, FL_T* o,
                                           ptrdiff_t n)
{
    ptrdiff_t j;
#define FL_GRAD_MAP(ACT) for (j = 0; j < n; j++) o[j] = FL_NAME(fl_grad)(ACT, g[j], s[j])
    switch (act) {
    case FL_RELU: /* without a branch per element: its sign is random */
        FL_NAME(fl_keep)(g, s, o, n, 0);
        break;
    FL_SMOOTH_CASES(FL_GRAD_MAP)
    }
#undef FL_GRAD_MAP
}

#undef FL_T
#undef FL_BITS
#undef FL_EXP_OF
#undef FL_ERF_OF
#undef FL_TANH_OF
#undef FL_NAME
