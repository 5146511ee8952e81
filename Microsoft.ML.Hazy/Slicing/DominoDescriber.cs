using System.Numerics.Tensors;
using Microsoft.Extensions.AI;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>How candidate phrases are scored for a slice.</summary>
public enum DominoDescribeMethod
{
    /// <summary>score = text · (μ_slice − μ_reference), with μ_slice the mean embedding of the slice's members.</summary>
    Mean,

    /// <summary>score = Pearson r between slice probability and image·text similarity over all rows.</summary>
    Correlation,
}

/// <summary>The reference mean subtracted from the slice's mean embedding by <see cref="DominoDescribeMethod.Mean"/>.</summary>
public enum DominoDescribeReference
{
    /// <summary>The mean embedding of the rows whose label is the slice members' most frequent label (the reference's describe).</summary>
    ModeClass,

    /// <summary>The mean embedding of all rows (the reference's MeanDescriber).</summary>
    GlobalMean,
}

/// <summary>Options of <see cref="DominoTransformer.DescribeAsync"/>.</summary>
public sealed class DominoDescribeOptions
{
    /// <summary>How phrases are scored.</summary>
    public DominoDescribeMethod Method { get; set; } = DominoDescribeMethod.Mean;

    /// <summary>The reference of the mean method.</summary>
    public DominoDescribeReference Reference { get; set; } = DominoDescribeReference.ModeClass;

    /// <summary>Phrases returned.</summary>
    public int Top { get; set; } = 10;

    /// <summary>Rows with a slice probability above this are the slice's members.</summary>
    public double MembershipThreshold { get; set; } = 0.5;

    /// <summary>Phrases sent to the text embedder per call.</summary>
    public int BatchSize { get; set; } = 256;
}

/// <summary>A candidate phrase and its scores for one slice.</summary>
/// <param name="Phrase">The phrase.</param>
/// <param name="Score">What the ranking used: text · (μ_slice − μ_reference) for the mean method, the correlation for the correlation method.</param>
/// <param name="Correlation">Pearson r between slice probability and the rows' similarity to the phrase (reported by both methods).</param>
public sealed record SliceDescription(string Phrase, double Score, double Correlation);

/// <summary>Describes Domino slices with phrases embedded by a cross-modal text encoder.</summary>
public static class DominoDescriber
{
    /// <summary>Templates used when none are given: "a photo of a {0}." and "a photo of {0}.".</summary>
    public static IReadOnlyList<string> DefaultTemplates { get; } = Array.AsReadOnly(new[] { "a photo of a {0}.", "a photo of {0}." });

    /// <summary>
    /// Candidate phrases: every template (a composite format string with one <c>{0}</c>) filled with every word of the
    /// vocabulary, without duplicates, in template-major order. Blank words are skipped.
    /// </summary>
    /// <param name="vocabulary">Words or short phrases, e.g. a word list such as Debian's <c>wamerican</c>.</param>
    /// <param name="templates">Templates; <see cref="DefaultTemplates"/> when null.</param>
    public static IReadOnlyList<string> CandidatePhrases(IEnumerable<string> vocabulary, IEnumerable<string>? templates = null)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        var words = vocabulary.Where(w => !string.IsNullOrWhiteSpace(w)).Select(w => w.Trim()).Distinct(StringComparer.Ordinal).ToArray();
        var result = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var template in templates ?? DefaultTemplates)
        {
            if (template is null || !template.Contains("{0}", StringComparison.Ordinal))
                throw new ArgumentException($"Template '{template}' has no '{{0}}' placeholder for the word.", nameof(templates));
            foreach (var word in words)
            {
                var phrase = string.Format(System.Globalization.CultureInfo.InvariantCulture, template, word);
                if (seen.Add(phrase))
                    result.Add(phrase);
            }
        }
        return result.AsReadOnly();
    }

    internal static async Task<float[][]> EmbedAsync(IEmbeddingGenerator<string, Embedding<float>> generator, string[] phrases, int size,
        string embeddingColumn, int batchSize, CancellationToken cancellation)
    {
        if (batchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "DominoDescribeOptions.BatchSize must be at least 1.");
        var result = new float[phrases.Length][];
        for (int start = 0; start < phrases.Length; start += batchSize)
        {
            var batch = phrases.AsMemory(start, Math.Min(batchSize, phrases.Length - start)).ToArray();
            var embeddings = await generator.GenerateAsync(batch, null, cancellation).ConfigureAwait(false);
            if (embeddings.Count != batch.Length)
                throw new InvalidOperationException($"The text embedder returned {embeddings.Count} embeddings for {batch.Length} phrases.");
            for (int i = 0; i < batch.Length; i++)
            {
                var v = embeddings[i].Vector;
                if (v.Length != size)
                    throw new InvalidOperationException(
                        $"The text embedder returned a vector of {v.Length} values for '{batch[i]}'; column '{embeddingColumn}' has {size}. The text and the rows must be embedded in the same space.");
                result[start + i] = v.ToArray();
            }
        }
        return result;
    }

    /// <summary>Scores every phrase and returns the top ones (ties: earlier candidate first).</summary>
    internal static IReadOnlyList<SliceDescription> Rank(float[] embeddings, int d, double[] labels, int classes, double[] sliceProbabilities,
        string[] phrases, float[][] text, DominoDescribeOptions options, string what)
    {
        if (options.Top < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.Top, "DominoDescribeOptions.Top must be at least 1.");
        int n = sliceProbabilities.Length;
        var mean = MeanOf(embeddings, d, Enumerable.Range(0, n));
        var correlations = Correlations(embeddings, d, sliceProbabilities, mean, text);
        double[] scores;
        if (options.Method == DominoDescribeMethod.Correlation)
        {
            scores = correlations;
        }
        else
        {
            var members = Enumerable.Range(0, n).Where(i => sliceProbabilities[i] > options.MembershipThreshold).ToArray();
            if (members.Length == 0)
                throw new InvalidOperationException($"No row belongs to {what} (probability above {options.MembershipThreshold}); there is nothing to describe.");
            var sliceMean = MeanOf(embeddings, d, members);
            double[] reference = mean;
            if (options.Reference == DominoDescribeReference.ModeClass)
            {
                var counts = new double[classes];
                foreach (var i in members)
                    for (int c = 0; c < classes; c++)
                        counts[c] += labels[(long)i * classes + c];
                int mode = 0;
                for (int c = 1; c < classes; c++)
                    if (counts[c] > counts[mode])
                        mode = c;
                var sameLabel = Enumerable.Range(0, n).Where(i => ArgMax(labels.AsSpan(i * classes, classes)) == mode).ToArray();
                reference = MeanOf(embeddings, d, sameLabel);
            }
            var direction = new double[d];
            for (int j = 0; j < d; j++)
                direction[j] = sliceMean[j] - reference[j];
            scores = text.Select(t => Dot(t, direction)).ToArray();
        }
        return Enumerable.Range(0, phrases.Length)
            .OrderByDescending(i => double.IsNaN(scores[i]) ? double.NegativeInfinity : scores[i]).ThenBy(i => i)
            .Take(options.Top)
            .Select(i => new SliceDescription(phrases[i], scores[i], correlations[i]))
            .ToArray();
    }

    // r(p, Z t) = tᵀ cov(Z, p) / (σ_p √(tᵀ Σ_Z t)), with Σ_Z built once so each phrase costs d² rather than n·d.
    private static double[] Correlations(float[] embeddings, int d, double[] p, double[] mean, float[][] text)
    {
        int n = p.Length;
        double pMean = p.Average();
        double pVar = p.Sum(v => (v - pMean) * (v - pMean)) / n;
        var crossCov = new double[d];
        for (int i = 0; i < n; i++)
        {
            double w = p[i] - pMean;
            if (w == 0)
                continue;
            var row = embeddings.AsSpan(i * d, d);
            for (int j = 0; j < d; j++)
                crossCov[j] += w * (row[j] - mean[j]);
        }
        for (int j = 0; j < d; j++)
            crossCov[j] /= n;
        var scatter = PrincipalComponents.Scatter(embeddings, n, d, mean);
        for (int j = 0; j < scatter.Length; j++)
            scatter[j] /= n;
        var result = new double[text.Length];
        Parallel.For(0, text.Length, () => new double[d], (t, _, td) =>
        {
            for (int j = 0; j < d; j++)
                td[j] = text[t][j];
            double quadratic = 0;
            for (int j = 0; j < d; j++)
                quadratic += td[j] * TensorPrimitives.Dot<double>(scatter.AsSpan(j * d, d), td);
            double denominator = Math.Sqrt(pVar * quadratic);
            result[t] = denominator > 0 ? TensorPrimitives.Dot<double>(td, crossCov) / denominator : 0;
            return td;
        }, _ => { });
        return result;
    }

    private static double[] MeanOf(float[] embeddings, int d, IEnumerable<int> rows)
    {
        var mean = new double[d];
        int count = 0;
        foreach (var i in rows)
        {
            var row = embeddings.AsSpan(i * d, d);
            for (int j = 0; j < d; j++)
                mean[j] += row[j];
            count++;
        }
        if (count > 0)
            for (int j = 0; j < d; j++)
                mean[j] /= count;
        return mean;
    }

    private static double Dot(float[] a, double[] b)
    {
        double s = 0;
        for (int j = 0; j < a.Length; j++)
            s += a[j] * b[j];
        return s;
    }

    private static int ArgMax(ReadOnlySpan<double> v)
    {
        int best = -1;
        double max = 0;
        for (int i = 0; i < v.Length; i++)
        {
            if (v[i] > max)
            {
                max = v[i];
                best = i;
            }
        }
        return best;
    }
}
