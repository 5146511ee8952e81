using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// AdamW, Adam and Nesterov SGD over parameter groups. TorchSharp's own optimizers pass implicitly created
/// <see cref="Scalar"/>s to native code and leave them to the finalizer, which can free one while native
/// code still reads it when another thread triggers a GC (a data loader's, a progress display's): a
/// crash seen in practice ("Expected false to be true" in c10 Scalar). Here every scalar is disposed
/// explicitly after its native call, and the update rules are those of the papers.
/// </summary>
internal sealed class ParameterOptimizer : IDisposable
{
    private const double Beta1 = 0.9, Beta2 = 0.999, Epsilon = 1e-8, Momentum = 0.9;

    private readonly HazyOptimizer _kind;
    private readonly Dictionary<Parameter, State> _state = new(ReferenceEqualityComparer.Instance);

    public ParameterOptimizer(HazyOptimizer kind, IReadOnlyList<ParameterGroup> groups)
    {
        _kind = kind;
        Groups = groups;
    }

    public IReadOnlyList<ParameterGroup> Groups { get; }

    public void ZeroGrad()
    {
        foreach (var p in Groups.SelectMany(g => g.Parameters))
            p.grad?.zero_();
    }

    public void Step()
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var group in Groups)
        {
            foreach (var p in group.Parameters)
            {
                var grad = p.grad;
                if (grad is null)
                    continue;
                var state = StateOf(p);
                state.Steps++;
                switch (_kind)
                {
                    case HazyOptimizer.AdamW:
                        using (var decay = (1 - group.LearningRate * group.WeightDecay).ToScalar())
                            p.mul_(decay);
                        AdamUpdate(p, grad, state, group.LearningRate);
                        break;
                    case HazyOptimizer.Adam:
                        AdamUpdate(p, WithL2(grad, p, group.WeightDecay), state, group.LearningRate);
                        break;
                    default:
                        SgdUpdate(p, WithL2(grad, p, group.WeightDecay), state, group.LearningRate);
                        break;
                }
            }
        }
    }

    /// <summary>
    /// Continues <paramref name="previous"/>'s state (moments and step counts) for every parameter of <paramref name="to"/>
    /// that <paramref name="from"/> holds under the same name with the same shape, as when a network is replaced by an
    /// equivalent one mid-run; the other parameters start with fresh state. Returns the names carried.
    /// </summary>
    /// <remarks>
    /// A parameter whose shape changed (a Monarch weight made dense) gets no mapped moments: the factors' gradients are
    /// contractions of the dense gradient with the other factor, a many-to-one map, so no function of the factors'
    /// moments gives the dense entries' first or second moments. Fresh Adam moments with their own bias correction make
    /// the first update lr·g/|g| per entry, within the bound lr that Adam's updates always keep.
    /// </remarks>
    public IReadOnlyList<string> CarryStateFrom(ParameterOptimizer previous, nn.Module from, nn.Module to)
    {
        if (previous._kind != _kind)
            throw new ArgumentException($"Cannot carry {previous._kind} state into {_kind}.", nameof(previous));
        var old = from.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var carried = new List<string>();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        foreach (var (name, p) in to.named_parameters())
        {
            if (!old.TryGetValue(name, out var source) || !source.shape.SequenceEqual(p.shape)
                || !previous._state.TryGetValue(source, out var state))
                continue;
            if (_state.Remove(p, out var replaced))
                replaced.Dispose();
            _state[p] = new State
            {
                Steps = state.Steps,
                First = state.First?.to(p.device).clone().DetachFromDisposeScope(),
                Second = state.Second?.to(p.device).clone().DetachFromDisposeScope(),
            };
            carried.Add(name);
        }
        return carried;
    }

    public void Dispose()
    {
        foreach (var s in _state.Values)
            s.Dispose();
        _state.Clear();
    }

    private static Tensor WithL2(Tensor grad, Tensor p, double weightDecay)
    {
        if (weightDecay == 0)
            return grad;
        using var wd = weightDecay.ToScalar();
        return grad.add(p, wd);
    }

    // Adam: m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  p ← p − lr · m̂ / (√v̂ + ε).
    private static void AdamUpdate(Parameter p, Tensor grad, State s, double lr)
    {
        double bc1 = 1 - Math.Pow(Beta1, s.Steps), bc2 = 1 - Math.Pow(Beta2, s.Steps);
        using (var b1 = Beta1.ToScalar())
        using (var a1 = (1 - Beta1).ToScalar())
            s.First!.mul_(b1).add_(grad, a1);
        using (var b2 = Beta2.ToScalar())
        using (var a2 = (1 - Beta2).ToScalar())
            s.Second!.mul_(b2).addcmul_(grad, grad, a2);
        using var scale = Math.Sqrt(bc2).ToScalar();
        using var eps = Epsilon.ToScalar();
        using var one = 1.0.ToScalar();
        // Every Scalar overload used here takes all its scalars as arguments: TorchSharp's shorter overloads
        // (add_(Scalar) → alpha 1) create hidden ones that hit the same finalizer race.
        var denom = s.Second!.sqrt().div_(scale).add_(eps, one);
        using var step = (-lr / bc1).ToScalar();
        p.addcdiv_(s.First!, denom, step);
    }

    // SGD with Nesterov momentum: b ← μ b + g;  p ← p − lr (g + μ b).
    private static void SgdUpdate(Parameter p, Tensor grad, State s, double lr)
    {
        using var mu = Momentum.ToScalar();
        using var one = 1.0.ToScalar();
        s.First!.mul_(mu).add_(grad, one);
        var direction = grad.add(s.First!, mu);
        using var step = (-lr).ToScalar();
        p.add_(direction, step);
    }

    private State StateOf(Parameter p)
    {
        if (!_state.TryGetValue(p, out var s))
        {
            s = new State
            {
                First = zeros_like(p).DetachFromDisposeScope(),
                Second = _kind == HazyOptimizer.Sgd ? null : zeros_like(p).DetachFromDisposeScope(),
            };
            _state[p] = s;
        }
        return s;
    }

    private sealed class State : IDisposable
    {
        public long Steps;
        public Tensor? First;
        public Tensor? Second;

        public void Dispose()
        {
            First?.Dispose();
            Second?.Dispose();
        }
    }
}

/// <summary>Parameters that share a learning rate and weight decay.</summary>
internal sealed class ParameterGroup
{
    public ParameterGroup(string name, IReadOnlyList<Parameter> parameters, double learningRate, double weightDecay)
    {
        Name = name;
        Parameters = parameters;
        BaseLearningRate = learningRate;
        LearningRate = learningRate;
        WeightDecay = weightDecay;
    }

    public string Name { get; }

    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The group's peak learning rate; the schedule scales it into <see cref="LearningRate"/>.</summary>
    public double BaseLearningRate { get; }

    public double LearningRate { get; set; }

    public double WeightDecay { get; }
}
