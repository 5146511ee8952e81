using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Interpretation;
using Microsoft.ML.Trainers;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>f_k(x) = Σ_j w[k, j] x_j + b_k in double, returned as float: a model whose attributions have closed forms.</summary>
internal sealed class LinearScore : IScoreFunction
{
    private readonly double[][] _weights;
    private readonly double[] _bias;

    public LinearScore(double[][] weights, double[]? bias = null)
    {
        _weights = weights;
        _bias = bias ?? new double[weights.Length];
    }

    public LinearScore(double[] weights, double bias = 0)
        : this([weights], [bias])
    {
    }

    public int FeatureSize => _weights[0].Length;

    public int OutputCount => _weights.Length;

    public int Calls { get; private set; }

    public float[] Score(ReadOnlySpan<float> rows, int count)
    {
        Calls++;
        int d = FeatureSize, k = OutputCount;
        var result = new float[count * k];
        for (int r = 0; r < count; r++)
            for (int o = 0; o < k; o++)
            {
                double s = _bias[o];
                for (int j = 0; j < d; j++)
                    s += _weights[o][j] * rows[r * d + j];
                result[r * k + o] = (float)s;
            }

        return result;
    }
}

/// <summary>Any function of one row, for non-linear closed forms.</summary>
internal sealed class FunctionScore(int featureSize, Func<float[], float> f) : IScoreFunction
{
    public int FeatureSize => featureSize;

    public int OutputCount => 1;

    public float[] Score(ReadOnlySpan<float> rows, int count)
    {
        var result = new float[count];
        for (int r = 0; r < count; r++)
            result[r] = f(rows.Slice(r * featureSize, featureSize).ToArray());
        return result;
    }
}

/// <summary>A stock ML.NET SDCA regression trained on synthetic linear data.</summary>
internal static class SdcaFixture
{
    public const int Dimensions = 8;

    public sealed class Row
    {
        [VectorType(Dimensions)]
        public float[] Features { get; set; } = [];

        public float Label { get; set; }
    }

    public static (MLContext Ml, ITransformer Model, float[] Weights, float Bias, float[] Samples) Train(int rows = 400)
    {
        var ml = new MLContext(3);
        var rng = new Random(5);
        double[] truth = [1.5, -2, 0.5, 3, -1, 0.25, 2, -0.75];
        var data = Enumerable.Range(0, rows).Select(_ =>
        {
            var x = Enumerable.Range(0, Dimensions).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
            return new Row { Features = x, Label = (float)(0.4 + x.Select((v, i) => v * truth[i]).Sum()) };
        }).ToArray();
        var model = ml.Regression.Trainers.Sdca(new SdcaRegressionTrainer.Options { NumberOfThreads = 1, MaximumNumberOfIterations = 50 })
            .Fit(ml.Data.LoadFromEnumerable(data));
        var weights = model.Model.Weights.ToArray();
        var samples = data.Take(5).SelectMany(r => r.Features).ToArray();
        return (ml, model, weights, model.Model.Bias, samples);
    }
}
