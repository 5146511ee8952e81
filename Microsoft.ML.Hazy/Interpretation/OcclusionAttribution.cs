namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Occlusion (Zeiler and Fergus 2014; Captum's <c>Occlusion</c>): a window slides over the row's shape and the
/// values it covers are replaced; a feature's attribution is the mean, over the windows covering it, of
/// f_target(x) − f_target(x with the window replaced). Model-agnostic: it needs only an <see cref="IScoreFunction"/>.
/// </summary>
/// <remarks>
/// Windows start at multiples of the stride along each dimension; as in Captum, there are
/// ⌈(shape − window) / stride⌉ + 1 positions per dimension and the last window is clipped at the edge, so with
/// stride ≤ window every feature is covered. A row costs <see cref="WindowCount"/> model evaluations; the
/// perturbed rows of all rows go to the model in batches of <see cref="Options.BatchSize"/>.
/// </remarks>
public sealed class OcclusionAttribution : IAttributionMethod
{
    /// <summary>Options of <see cref="OcclusionAttribution"/>.</summary>
    public sealed class Options
    {
        /// <summary>The row's shape, e.g. [C, H, W] for images or [L, C] for sequences; its product must be the feature size. Null: [feature size].</summary>
        public int[]? Shape { get; set; }

        /// <summary>The window's shape, one entry per dimension of <see cref="Shape"/>. Null: all ones (one feature at a time).</summary>
        public int[]? WindowShape { get; set; }

        /// <summary>The window's step along each dimension; at most the window's extent where the window is smaller than the shape. Null: all ones.</summary>
        public int[]? Strides { get; set; }

        /// <summary>The value written into the window.</summary>
        public float ReplacementValue { get; set; }

        /// <summary>Perturbed rows per call to the score function.</summary>
        public int BatchSize { get; set; } = 256;
    }

    private readonly IScoreFunction _model;
    private readonly int[] _shape, _window, _strides, _positions;
    private readonly int _windowSize;
    private readonly float _replacement;
    private readonly int _batchSize;
    private readonly int[] _coverage;

    /// <summary>Occlusion of <paramref name="model"/>.</summary>
    /// <param name="model">The scores to explain.</param>
    /// <param name="options">The shapes, strides and replacement value; null for one feature at a time replaced by 0.</param>
    public OcclusionAttribution(IScoreFunction model, Options? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new Options();
        _model = model;
        int d = model.FeatureSize;
        _shape = options.Shape?.ToArray() ?? [d];
        int rank = _shape.Length;
        if (rank == 0 || _shape.Any(s => s <= 0) || _shape.Aggregate(1L, (p, s) => p * s) != d)
            throw new ArgumentException($"Shape [{string.Join(", ", _shape)}] has {_shape.Aggregate(1L, (p, s) => p * s)} elements; expected positive extents whose product is the model's feature size {d}.", nameof(options));
        _window = options.WindowShape?.ToArray() ?? Enumerable.Repeat(1, rank).ToArray();
        _strides = options.Strides?.ToArray() ?? Enumerable.Repeat(1, rank).ToArray();
        if (_window.Length != rank || _strides.Length != rank)
            throw new ArgumentException($"WindowShape has {_window.Length} and Strides {_strides.Length} dimensions; expected {rank}, the rank of Shape [{string.Join(", ", _shape)}].", nameof(options));
        _positions = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            if (_window[i] < 1 || _window[i] > _shape[i])
                throw new ArgumentException($"WindowShape[{i}] is {_window[i]}; expected 1 to {_shape[i]} (Shape[{i}]).", nameof(options));
            if (_strides[i] < 1 || (_strides[i] > _window[i] && _window[i] < _shape[i]))
                throw new ArgumentException($"Strides[{i}] is {_strides[i]}; expected 1 to {_window[i]} (WindowShape[{i}]) so that every feature is covered.", nameof(options));
            _positions[i] = (_shape[i] - _window[i] + _strides[i] - 1) / _strides[i] + 1;
        }

        AttributionChecks.Positive(options.BatchSize, nameof(options.BatchSize));
        long windows = _positions.Aggregate(1L, (p, s) => p * s);
        if (windows > int.MaxValue)
            throw new ArgumentException($"The window positions number {windows}; use a larger stride.", nameof(options));
        WindowCount = (int)windows;
        _windowSize = _window.Aggregate(1, (p, s) => p * s);
        _replacement = options.ReplacementValue;
        _batchSize = options.BatchSize;
        _coverage = new int[d];
        var indices = new int[_windowSize];
        for (int w = 0; w < WindowCount; w++)
        {
            int n = WindowIndices(w, indices);
            for (int j = 0; j < n; j++)
                _coverage[indices[j]]++;
        }
    }

    /// <inheritdoc/>
    public string Name => "Occlusion";

    /// <inheritdoc/>
    public int FeatureSize => _model.FeatureSize;

    /// <summary>Window positions per row: the model evaluations one row costs, besides the row itself.</summary>
    public int WindowCount { get; }

    /// <inheritdoc/>
    public float[] Attribute(ReadOnlySpan<float> features, int count, ReadOnlySpan<int> targets)
    {
        int d = FeatureSize, k = _model.OutputCount;
        AttributionChecks.Rows(features.Length, count, d, nameof(features));
        AttributionChecks.Targets(targets, count, k, nameof(targets));
        var reference = _model.Score(features, count);
        var sums = new double[(long)count * d];
        long jobs = (long)count * WindowCount;
        int batch = (int)Math.Min(_batchSize, Math.Max(1, jobs));
        var buffer = new float[batch * d];
        var windowIndices = new int[batch * _windowSize];
        var windowLengths = new int[batch];
        for (long start = 0; start < jobs; start += batch)
        {
            int n = (int)Math.Min(batch, jobs - start);
            for (int j = 0; j < n; j++)
            {
                int row = (int)((start + j) / WindowCount), w = (int)((start + j) % WindowCount);
                var perturbed = buffer.AsSpan(j * d, d);
                features.Slice(row * d, d).CopyTo(perturbed);
                var idx = windowIndices.AsSpan(j * _windowSize, _windowSize);
                int m = windowLengths[j] = WindowIndices(w, idx);
                for (int q = 0; q < m; q++)
                    perturbed[idx[q]] = _replacement;
            }

            var scores = _model.Score(buffer.AsSpan(0, n * d), n);
            for (int j = 0; j < n; j++)
            {
                int row = (int)((start + j) / WindowCount), t = targets[row];
                double delta = (double)reference[row * k + t] - scores[j * k + t];
                var idx = windowIndices.AsSpan(j * _windowSize, windowLengths[j]);
                var rowSums = sums.AsSpan(row * d, d);
                foreach (int f in idx)
                    rowSums[f] += delta;
            }
        }

        var result = new float[sums.Length];
        for (long i = 0; i < sums.Length; i++)
            result[i] = (float)(sums[i] / _coverage[i % d]);
        return result;
    }

    /// <summary>Writes the row-major indices of the features window <paramref name="w"/> covers; returns how many.</summary>
    private int WindowIndices(int w, Span<int> output)
    {
        int rank = _shape.Length;
        Span<int> begin = stackalloc int[rank], end = stackalloc int[rank], at = stackalloc int[rank];
        for (int i = rank - 1; i >= 0; i--)
        {
            begin[i] = w % _positions[i] * _strides[i];
            end[i] = Math.Min(begin[i] + _window[i], _shape[i]);
            w /= _positions[i];
        }

        begin.CopyTo(at);
        int n = 0;
        while (true)
        {
            int flat = 0;
            for (int i = 0; i < rank; i++)
                flat = flat * _shape[i] + at[i];
            output[n++] = flat;
            int dim = rank - 1;
            while (dim >= 0 && ++at[dim] == end[dim])
            {
                at[dim] = begin[dim];
                dim--;
            }

            if (dim < 0)
                return n;
        }
    }
}
