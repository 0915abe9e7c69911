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
})
