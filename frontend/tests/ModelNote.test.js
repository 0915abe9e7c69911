import { describe, expect, it } from 'vitest'
import { mount } from '@vue/test-utils'
import ModelNote from '../src/components/ModelNote.vue'

const MODEL = { name: 'vgg10-gray', version: '3', trained_on: '140k', threshold: 0.5 }

describe('ModelNote', () => {
  it('links the model card in a new tab when health names one', () => {
    const note = mount(ModelNote, { props: { model: { ...MODEL, model_card: '/api/model-card' } } })
    const link = note.find('a.model-card-link')
    expect(link.exists()).toBe(true)
    expect(link.attributes('href')).toBe('/api/model-card')
    expect(link.attributes('target')).toBe('_blank')
    expect(link.attributes('rel')).toContain('noopener')
    expect(link.text()).toContain('Model card')
    expect(link.text()).toContain('opens in a new tab')
  })

  it('has no link when the model ships no card, or while health is loading or failed', () => {
    expect(mount(ModelNote, { props: { model: { ...MODEL, model_card: null } } }).find('a').exists()).toBe(false)
    expect(mount(ModelNote, { props: { model: MODEL } }).find('a').exists()).toBe(false)
    expect(mount(ModelNote, { props: { model: null } }).find('a').exists()).toBe(false)
    expect(mount(ModelNote, { props: { model: null, problem: 'The model is down.' } }).find('a').exists()).toBe(false)
  })

  it('never links somewhere other than this app', () => {
    const note = mount(ModelNote, { props: { model: { ...MODEL, model_card: 'javascript:alert(1)' } } })
    expect(note.find('a').exists()).toBe(false)
  })

  describe('what the model learned and its operating point', () => {
    const RETRAINED = {
      ...MODEL,
      threshold: 0.83,
      generators: {
        learned: ['StyleGAN2 (thispersondoesnotexist.com)', 'Stable Diffusion 2.1 (SDFD)'],
        not_learned: 'other diffusion models (Midjourney, Flux), face swaps: tested only by leaving one generator out of training (see the model card)',
      },
      operating_point: {
        rule: 'at most 2 % of validation real photos called fake, each real source weighing the same',
        false_alarm_target: 0.02,
      },
    }

    it('lists the generators learned and not learned, and the rule behind the threshold', () => {
      const note = mount(ModelNote, { props: { model: RETRAINED } })
      expect(note.find('.model-learned').text()).toBe(
        'Learned from fakes made by: StyleGAN2 (thispersondoesnotexist.com); Stable Diffusion 2.1 (SDFD).',
      )
      expect(note.find('.model-not-learned').text()).toBe(
        'Never shown in training: other diffusion models (Midjourney, Flux), face swaps: tested only by leaving one generator out of training (see the model card).',
      )
      expect(note.find('.model-operating-point').text()).toBe(
        'It says “likely fake” from a probability of fake of 83%, a threshold chosen by this rule: at most 2 % of validation real photos called fake, each real source weighing the same.',
      )
      // The reminder stays one element (the browser tests wait on its text).
      expect(note.findAll('p').filter((p) => p.text().includes('It can be wrong'))).toHaveLength(1)
    })

    it('falls back on the target when the rule is missing', () => {
      const model = { ...RETRAINED, generators: null, operating_point: { false_alarm_target: 0.02 } }
      const note = mount(ModelNote, { props: { model } })
      expect(note.find('.model-operating-point').text()).toBe(
        'It says “likely fake” from a probability of fake of 83%, a threshold chosen so that at most 2% of real validation photos are called fake.',
      )
      expect(note.find('.model-learned').exists()).toBe(false)
      expect(note.find('.model-not-learned').exists()).toBe(false)
    })

    it('shows none of it for a model.json from before (null or missing), or while loading', () => {
      for (const model of [MODEL, { ...MODEL, generators: null, operating_point: null }, null]) {
        expect(mount(ModelNote, { props: { model } }).find('.model-scope').exists()).toBe(false)
      }
    })

    it('ignores fields of the wrong shape rather than printing them', () => {
      const model = { ...MODEL, generators: { learned: 'StyleGAN', not_learned: 7 }, operating_point: { rule: 3 } }
      expect(mount(ModelNote, { props: { model } }).find('.model-scope').exists()).toBe(false)
    })
  })
  describe('a model that looks at each face two ways', () => {
    const VIEWS = [
      { name: 'cnn', title: 'Face network', detail: 'EfficientNet-Lite0 trained on aligned faces' },
      { name: 'clip', title: 'CLIP', detail: 'OpenAI CLIP ViT-B/16 image features, frozen, with a fitted head' },
    ]
    const FUSION = 'The two probabilities are averaged in logit space, with weights fitted on validation photos.'

    it('names both views and how they are combined', () => {
      const note = mount(ModelNote, { props: { model: { ...MODEL, views: VIEWS, fusion: FUSION } } })
      expect(note.find('.model-views').text()).toBe(
        'It looks at every face two ways: Face network (EfficientNet-Lite0 trained on aligned faces) and CLIP (OpenAI CLIP ViT-B/16 image features, frozen, with a fitted head). ' +
          FUSION,
      )
    })

    it('leaves the fusion sentence out when health has none', () => {
      const note = mount(ModelNote, { props: { model: { ...MODEL, views: VIEWS } } })
      expect(note.find('.model-views').text()).toBe(
        'It looks at every face two ways: Face network (EfficientNet-Lite0 trained on aligned faces) and CLIP (OpenAI CLIP ViT-B/16 image features, frozen, with a fitted head).',
      )
    })

    it('says nothing of views for a one-view model', () => {
      for (const model of [MODEL, { ...MODEL, views: null }, { ...MODEL, views: [VIEWS[0]] }]) {
        const note = mount(ModelNote, { props: { model } })
        expect(note.find('.model-views').exists()).toBe(false)
        expect(note.text()).not.toContain('two ways')
      }
    })
  })
})
