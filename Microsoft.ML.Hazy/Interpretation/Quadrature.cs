namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>Nodes α and weights w on [0, 1] with ∫₀¹ g(α) dα ≈ Σ w g(α).</summary>
internal static class Quadrature
{
    public static (double[] Alphas, double[] Weights) Nodes(IntegrationRule rule, int n)
    {
        if (n < 1 || (rule == IntegrationRule.RiemannTrapezoid && n < 2))
            throw new ArgumentOutOfRangeException(nameof(n), n, $"The {rule} rule needs at least {(rule == IntegrationRule.RiemannTrapezoid ? 2 : 1)} steps.");
        var a = new double[n];
        var w = new double[n];
        switch (rule)
        {
            case IntegrationRule.GaussLegendre:
                return GaussLegendre(n);
            case IntegrationRule.RiemannTrapezoid:
                for (int i = 0; i < n; i++)
                {
                    a[i] = (double)i / (n - 1);
                    w[i] = (i == 0 || i == n - 1 ? 0.5 : 1.0) / (n - 1);
                }
                return (a, w);
            default:
                double shift = rule switch { IntegrationRule.RiemannLeft => 0, IntegrationRule.RiemannRight => 1, _ => 0.5 };
                for (int i = 0; i < n; i++)
                {
                    a[i] = (i + shift) / n;
                    w[i] = 1.0 / n;
                }
                return (a, w);
        }
    }

    /// <summary>Gauss–Legendre: the roots of P_n by Newton's method from Chebyshev guesses, mapped from [−1, 1] to [0, 1].</summary>
    private static (double[] Alphas, double[] Weights) GaussLegendre(int n)
    {
        var a = new double[n];
        var w = new double[n];
        for (int i = 0; i < n; i++)
        {
            double x = Math.Cos(Math.PI * (i + 0.75) / (n + 0.5));
            double dp = 1;
            for (int iter = 0; iter < 100; iter++)
            {
                // P_n(x) and P_n'(x) by the three-term recurrence.
                double p0 = 1, p1 = x;
                for (int k = 2; k <= n; k++)
                    (p0, p1) = (p1, ((2 * k - 1) * x * p1 - (k - 1) * p0) / k);
                double pn = n == 1 ? x : p1;
                double pm = n == 1 ? 1 : p0;
                dp = n * (x * pn - pm) / (x * x - 1);
                double step = pn / dp;
                x -= step;
                if (Math.Abs(step) < 1e-15)
                    break;
            }
            a[n - 1 - i] = (x + 1) / 2;
            w[n - 1 - i] = 1 / ((1 - x * x) * dp * dp);
        }
        return (a, w);
    }
}
